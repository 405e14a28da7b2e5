"""The accelerator for POST /graphql: remembered documents answered by compiled plans (KENSA_GRAPHQL_FASTPATH)."""
