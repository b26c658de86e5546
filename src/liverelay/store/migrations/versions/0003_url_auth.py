"""URL authentication configs (UpdateAuthKey / DescribeAuth).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "url_auth",
        sa.Column("vhost", sa.String, primary_key=True),
        sa.Column("app", sa.String, primary_key=True),
        sa.Column("scene", sa.String, primary_key=True),
        sa.Column("enabled", sa.Integer, nullable=False),
        sa.Column("valid_duration", sa.BigInteger, nullable=False),
        sa.Column("keys_json", sa.Text, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("updated", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("url_auth")
