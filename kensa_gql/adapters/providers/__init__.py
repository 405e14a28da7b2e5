"""Video providers: one module per vendor, plus the embedded renderer used without an API key."""
