"""Adapters: the database, media providers, storage and pub/sub behind the ports in ``domain/ports.py``."""
