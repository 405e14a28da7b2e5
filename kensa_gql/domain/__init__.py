"""The pure core: rules about money, videos and models. Standard library only."""
