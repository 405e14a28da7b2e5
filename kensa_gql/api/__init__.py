"""The transports: REST (/api/v1) and GraphQL (/graphql). Thin, symmetric, same services."""
