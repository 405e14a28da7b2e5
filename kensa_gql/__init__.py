"""kensa-gql: a GraphQL gateway for AI video generation with a legacy-exact /api/v1 REST mount."""

__version__ = "0.1.0"
