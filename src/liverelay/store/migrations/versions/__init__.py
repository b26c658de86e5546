"""Alembic revisions: append a new file, never edit a released one."""
