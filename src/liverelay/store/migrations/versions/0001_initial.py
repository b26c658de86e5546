"""Initial schema: the tables of liverelay's first SQLite store (schema_version 1).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None

_serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "access_keys",
        sa.Column("ak", sa.String, primary_key=True),
        sa.Column("sk", sa.String, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("enabled", sa.Integer, nullable=False, server_default="1"),
    )
    op.create_table(
        "domains",
        sa.Column("domain", sa.String, primary_key=True),
        sa.Column("type", sa.String, nullable=False),
        sa.Column("vhost", sa.String, nullable=False),
        sa.Column("region", sa.String, nullable=False),
        sa.Column("status", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_domains_vhost", "domains", ["vhost"])
    op.create_table(
        "relay_v3",
        sa.Column("vhost", sa.String, primary_key=True),
        sa.Column("app", sa.String, primary_key=True),
        sa.Column("groups_json", sa.Text, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("updated", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "relay_v4",
        sa.Column("id", _serial, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String, nullable=False, unique=True),
        sa.Column("vhost", sa.String, nullable=False),
        sa.Column("app", sa.String, nullable=False),
        sa.Column("stream", sa.String, nullable=False),
        sa.Column("domain", sa.String, nullable=False),
        sa.Column("src_addrs_json", sa.Text, nullable=False),
        sa.Column("start_time", sa.BigInteger),
        sa.Column("end_time", sa.BigInteger),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("updated", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("vhost", "app", "stream"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    for table in ("relay_v4", "relay_v3", "domains", "access_keys"):
        op.drop_table(table)
