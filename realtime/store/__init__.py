"""Storage: one SQLAlchemy Core layer over SQLite (default) or PostgreSQL."""

from realtime.store.db import Store, open_store

__all__ = ["Store", "open_store"]
