"""Alembic environment: always run on the connection liverelay hands over (store/migrate.py)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from liverelay.store.schema import metadata

connection: Connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things: later migrations use batch mode there.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
