"""The legacy-exact REST mount at /api/v1."""
