"""The [cluster] settings and the node id kept in the data dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from liverelay.cluster.membership import load_node_id
from liverelay.config import ClusterSettings, ConfigError, load_settings


def test_cluster_settings_are_range_checked(tmp_path: Path) -> None:
    settings = load_settings(None, {"LIVERELAY_CLUSTER_LEASE_TTL_S": "2.5"}, {})
    assert settings.cluster.lease_ttl_s == 2.5
    for name, value in (("LEASE_TTL_S", "0"), ("NODE_ID", "two words"), ("MAX_HANDOFFS", "0")):
        with pytest.raises(ConfigError, match=f"cluster.{name.lower()}"):
            load_settings(None, {f"LIVERELAY_CLUSTER_{name}": value}, {})


def test_node_id_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = load_node_id(ClusterSettings(), tmp_path)
    assert first == load_node_id(ClusterSettings(), tmp_path)
    assert (tmp_path / "node_id").read_text().strip() == first
    assert load_node_id(ClusterSettings(node_id="edge-1"), tmp_path) == "edge-1"
    (tmp_path / "node_id").write_text("not valid!\n")
    with pytest.raises(ConfigError, match="node_id"):
        load_node_id(ClusterSettings(), tmp_path)
