"""The cluster on PostgreSQL: membership (nodes and heartbeats), fixed-relay leases, peer pulls.

Nothing here runs on SQLite (a single node); see docs/cluster.md.
"""
