"""The tables, defined once (SQLAlchemy Core) for SQLite and PostgreSQL.

This describes the schema at the newest migration; the migrations (store/migrations/)
are what create and change real databases, and a test checks both agree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# Integer on SQLite (so the column is the rowid alias and AUTOINCREMENT keeps creation
# order), BIGINT identity on PostgreSQL.
_Serial = BigInteger().with_variant(Integer(), "sqlite")

access_keys = Table(
    "access_keys",
    metadata,
    Column("ak", String, primary_key=True),
    Column("sk", String, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("enabled", Integer, nullable=False, server_default="1"),
)

domains = Table(
    "domains",
    metadata,
    Column("domain", String, primary_key=True),
    Column("type", String, nullable=False),
    Column("vhost", String, nullable=False, index=True),
    Column("region", String, nullable=False),
    Column("status", Integer, nullable=False, server_default="0"),
    Column("created", BigInteger, nullable=False),
)

relay_v3 = Table(
    "relay_v3",
    metadata,
    Column("vhost", String, primary_key=True),
    Column("app", String, primary_key=True),
    Column("groups_json", Text, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("updated", BigInteger, nullable=False),
)

relay_v4 = Table(
    "relay_v4",
    metadata,
    Column("id", _Serial, primary_key=True, autoincrement=True),
    Column("task_id", String, nullable=False, unique=True),
    Column("vhost", String, nullable=False),
    Column("app", String, nullable=False),
    Column("stream", String, nullable=False),
    Column("domain", String, nullable=False),
    Column("src_addrs_json", Text, nullable=False),
    Column("start_time", BigInteger),
    Column("end_time", BigInteger),
    Column("created", BigInteger, nullable=False),
    Column("updated", BigInteger, nullable=False),
    UniqueConstraint("vhost", "app", "stream"),
    sqlite_autoincrement=True,
)

# URL authentication (UpdateAuthKey): one row per (vhost, app, scene), app "" = all apps.
url_auth = Table(
    "url_auth",
    metadata,
    Column("vhost", String, primary_key=True),
    Column("app", String, primary_key=True),
    Column("scene", String, primary_key=True),
    Column("enabled", Integer, nullable=False),
    Column("valid_duration", BigInteger, nullable=False),
    Column("keys_json", Text, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("updated", BigInteger, nullable=False),
)

# Cluster membership (PostgreSQL clusters): one row per node, rewritten by its heartbeat.
# Times are Unix milliseconds from the database's clock (one clock for every node).
# streams_json: the streams the node holds from a primary source (published, fixed relay,
# pulled from an external origin) - what peers may pull from it; status_json: its relay
# status rows; stats_json: its counters (viewers, fixed relays owned, ...).
nodes = Table(
    "nodes",
    metadata,
    Column("node_id", String, primary_key=True),
    Column("api_url", String, nullable=False),
    Column("rtmp_url", String, nullable=False),
    Column("http_url", String, nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("heartbeat_at", BigInteger, nullable=False),
    Column("draining", Integer, nullable=False, server_default="0"),
    Column("streams_json", Text, nullable=False, server_default="[]"),
    Column("status_json", Text, nullable=False, server_default="[]"),
    Column("stats_json", Text, nullable=False, server_default="{}"),
)

# Fixed-relay (V4) leases: the node that may run a task until expires_at (database clock,
# Unix ms). epoch grows on every change of owner (a fencing number); handoff_to names the
# node taking the task over from a draining owner (make-before-break).
leases = Table(
    "leases",
    metadata,
    Column("task_id", String, primary_key=True),
    Column("owner", String, nullable=True),
    Column("expires_at", BigInteger, nullable=False, server_default="0"),
    Column("epoch", BigInteger, nullable=False, server_default="0"),
    Column("handoff_to", String, nullable=True),
    Index("leases_owner", "owner"),
)

# One row (id = 1): the number of the last committed change. A writer on PostgreSQL
# increments it in its transaction; the row lock makes the numbers follow commit order
# with no holes (a rolled-back write gives its number back), so a node that sees n + 2
# after n knows it missed a notification.
changes = Table(
    "changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
)

CONFIG_TABLES = (access_keys, domains, relay_v3, relay_v4, url_auth)
