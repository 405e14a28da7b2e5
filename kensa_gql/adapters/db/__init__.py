"""The database adapter: tables, engine, repositories and the unit of work (SQLAlchemy Core)."""
