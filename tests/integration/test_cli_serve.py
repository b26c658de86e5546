"""`liverelay serve` as a real subprocess (conftest's start_node): the banner names
every listener, the environment's key pair works, status shows a live relay, and
SIGTERM ends the node cleanly."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import Any

from click.testing import CliRunner
from tests.conftest import TEST_AK, TEST_SK, NodeProcess, free_port, wait_until
from tests.integration.test_sdk_harness import SEED_DOMAINS_ADD

from liverelay.cli import cli


def cli_json(node: NodeProcess, command: str) -> Any:
    """Run a `liverelay` command line (split on spaces) against the node with --json."""
    args = command.split()
    env = {"ACCESS_KEY_ID": TEST_AK, "ACCESS_KEY_SECRET": TEST_SK, "LIVERELAY_ENDPOINT": node.api_host}
    result = CliRunner().invoke(cli, [*args, "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_serve_banner_key_status_and_sigterm(node_factory: Callable[..., NodeProcess]) -> None:
    node = node_factory(
        extra_env={"LIVERELAY_RELAY_CONNECT_TIMEOUT_S": "1", "LIVERELAY_RELAY_BACKOFF_MAX_S": "1"}
    )
    log = wait_until(
        lambda: node.log() if "liverelay node is up" in node.log() else "", 10, "the banner", interval=0.1
    )
    assert f"api   http://127.0.0.1:{node.api_port}/" in log
    assert f"http  http://127.0.0.1:{node.http_port}/{{app}}/{{stream}}.flv" in log
    assert f"rtmp  rtmp://127.0.0.1:{node.rtmp_port}/{{app}}/{{stream}}" in log
    assert f"liverelay domain list --endpoint 127.0.0.1:{node.api_port}" in log

    # ACCESS_KEY_ID/ACCESS_KEY_SECRET from the environment were put in the store.
    cli_json(node, SEED_DOMAINS_ADD)
    dead_origin = f"rtmp://127.0.0.1:{free_port()}/live/cam"  # nothing listens there
    cli_json(node, f"relay v4 create --domain pull.example.com --app live --stream cam --src {dead_origin}")

    def cam_row() -> dict[str, Any] | None:
        rows = cli_json(node, "relay status")["Result"]["RelayStatusList"]
        row = next((r for r in rows if r.get("Stream") == "cam"), None)
        return row if row and row.get("Attempts", 0) >= 1 else None

    row = wait_until(cam_row, 15, "the fixed relay to try its origin", interval=0.1)
    assert row["Type"] == "fixed"
    assert row["State"] in ("starting", "retrying")
    assert row["LastError"]

    env = {"ACCESS_KEY_ID": TEST_AK, "ACCESS_KEY_SECRET": TEST_SK, "COLUMNS": "250"}
    table = CliRunner().invoke(cli, ["relay", "status", "--endpoint", node.api_host], env=env).stdout
    assert "push.example.com/live/cam" in table
    assert "fixed" in table

    node.proc.send_signal(signal.SIGTERM)
    assert node.proc.wait(timeout=15) == 0
    assert "Traceback" not in node.log()
