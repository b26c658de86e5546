"""Cluster membership and fixed-relay leases (PostgreSQL clusters; unused on SQLite).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("node_id", sa.String, primary_key=True),
        sa.Column("api_url", sa.String, nullable=False),
        sa.Column("rtmp_url", sa.String, nullable=False),
        sa.Column("http_url", sa.String, nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("heartbeat_at", sa.BigInteger, nullable=False),
        sa.Column("draining", sa.Integer, nullable=False, server_default="0"),
        sa.Column("streams_json", sa.Text, nullable=False, server_default="[]"),
        sa.Column("status_json", sa.Text, nullable=False, server_default="[]"),
        sa.Column("stats_json", sa.Text, nullable=False, server_default="{}"),
    )
    op.create_table(
        "leases",
        sa.Column("task_id", sa.String, primary_key=True),
        sa.Column("owner", sa.String, nullable=True),
        sa.Column("expires_at", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("epoch", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("handoff_to", sa.String, nullable=True),
    )
    op.create_index("leases_owner", "leases", ["owner"])


def downgrade() -> None:
    op.drop_index("leases_owner", table_name="leases")
    op.drop_table("leases")
    op.drop_table("nodes")
