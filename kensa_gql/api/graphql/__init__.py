"""The GraphQL API at /graphql: queries, mutations and the live ``videoStatus`` subscription."""
