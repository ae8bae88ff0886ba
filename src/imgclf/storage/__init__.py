"""Persistence for the gateway: SQLAlchemy models, Alembic migrations, the image store."""
