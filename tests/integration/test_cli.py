"""The `liverelay` CLI: keys on a tmp store, API commands against a real API
listener, error output and exit codes, and `serve` as a real subprocess."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from tests.conftest import TEST_AK, TEST_SK, run_liverelay
from tests.integration.test_sdk_harness import SEED_DOMAINS_ADD, LocalApi, run_local_api

from liverelay.cli import age, cli, parse_time, status_rows, status_table

WIDE = {"COLUMNS": "250", "NO_COLOR": "1", "LIVERELAY_ENDPOINT": ""}


def invoke(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, args, env={**WIDE, **(env or {})}, catch_exceptions=False)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[LocalApi]:
    with run_local_api(tmp_path / "node") as local:
        yield local


def call(api: LocalApi, *args: str) -> Result:
    """Run the CLI against `api`; a single argument is a whole command line, split on spaces."""
    env = {"ACCESS_KEY_ID": TEST_AK, "ACCESS_KEY_SECRET": TEST_SK, "LIVERELAY_ENDPOINT": api.host}
    return invoke(args[0].split() if len(args) == 1 else list(args), env)


def call_json(api: LocalApi, *args: str) -> Any:
    result = call(api, *(args[0].split() if len(args) == 1 else args), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- keys ----------------------------------------------------------------------------------


def test_keys_create_list_delete(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    created = invoke(["keys", "create", "--data-dir", data, "--json"])
    assert created.exit_code == 0, created.output
    pair = json.loads(created.stdout)
    assert pair["AccessKeyId"].startswith("AKLT")
    assert len(pair["SecretAccessKey"]) >= 32

    human = invoke(["keys", "create", "--data-dir", data])
    assert human.exit_code == 0
    assert "SecretAccessKey:" in human.stdout

    listed = json.loads(invoke(["keys", "list", "--data-dir", data, "--json"]).stdout)
    assert len(listed) == 2
    assert pair["AccessKeyId"] in {k["AccessKeyId"] for k in listed}
    assert all("SecretAccessKey" not in k for k in listed)  # secrets are shown once, never listed
    table = invoke(["keys", "list", "--data-dir", data]).stdout
    assert pair["AccessKeyId"] in table

    deleted = invoke(["keys", "delete", pair["AccessKeyId"], "--data-dir", data, "--json"])
    assert deleted.exit_code == 0
    assert json.loads(deleted.stdout) == {"AccessKeyId": pair["AccessKeyId"], "Deleted": True}
    again = invoke(["keys", "delete", pair["AccessKeyId"], "--data-dir", data])
    assert again.exit_code == 1
    assert again.stderr.startswith("error: no such key")
    assert len(json.loads(invoke(["keys", "list", "--data-dir", data, "--json"]).stdout)) == 1


def test_created_key_is_accepted_by_the_api(tmp_path: Path) -> None:
    with run_local_api(tmp_path / "node") as local:
        created = invoke(["keys", "create", "--data-dir", str(local.settings.data_dir), "--json"])
        pair = json.loads(created.stdout)
        env = {"ACCESS_KEY_ID": pair["AccessKeyId"], "ACCESS_KEY_SECRET": pair["SecretAccessKey"]}
        listed = invoke(["domain", "list", "--endpoint", local.host, "--json"], env)
        assert listed.exit_code == 0, listed.output
        wrong = invoke(["domain", "list", "--endpoint", local.host], {**env, "ACCESS_KEY_SECRET": "nope"})
        assert wrong.exit_code == 1
        assert wrong.stderr.startswith("error: SignatureDoesNotMatch: ")


# -- domain / relay against the API -----------------------------------------------------------


def test_domain_commands(api: LocalApi) -> None:
    added = call(api, f"{SEED_DOMAINS_ADD} --pull pull2.example.com")
    assert added.exit_code == 0, added.output
    listed = call_json(api, "domain", "list")
    names = {d["Domain"]: (d["Type"], d["Vhost"]) for d in listed["Result"]["DomainList"]}
    assert names == {
        "push.example.com": ("push", "push.example.com"),
        "pull.example.com": ("pull-flv", "push.example.com"),
        "pull2.example.com": ("pull-flv", "push.example.com"),
    }
    assert "pull2.example.com" in call(api, "domain", "list").stdout
    assert call(api, "domain", "rm", "pull2.example.com").exit_code == 0
    listed = call_json(api, "domain", "list", "--vhost", "push.example.com")
    assert {d["Domain"] for d in listed["Result"]["DomainList"]} == {"push.example.com", "pull.example.com"}


def add_seed_domains(api: LocalApi) -> None:
    result = call(api, SEED_DOMAINS_ADD)
    assert result.exit_code == 0, result.output


def test_relay_v3_commands(api: LocalApi) -> None:
    add_seed_domains(api)
    first = call(
        api,
        "relay v3 set --vhost push.example.com --app live --group relay1"
        " --server rtmp://example.org --server rtmp://10.0.0.2:1936?token=abc --param key1=value1",
    )
    assert first.exit_code == 0, first.output
    second = call(
        api,
        "relay v3 set --vhost push.example.com --app live --group backup --server flv://flv.example.org:8080",
    )
    assert second.exit_code == 0, second.output

    shown = call_json(api, "relay v3 show --vhost push.example.com --app live")
    [config] = shown["Result"]["RelaySourceConfigList"]
    assert config["GroupDetails"] == [
        {
            "Group": "relay1",
            "Servers": [
                {
                    "RelaySourceProtocol": "rtmp",
                    "RelaySourceDomain": "example.org",
                    "RelaySourceParams": {"key1": "value1"},
                },
                {
                    "RelaySourceProtocol": "rtmp",
                    "RelaySourceDomain": "10.0.0.2:1936",
                    "RelaySourceParams": {"key1": "value1", "token": "abc"},
                },
            ],
        },
        {
            "Group": "backup",
            "Servers": [
                {
                    "RelaySourceProtocol": "flv",
                    "RelaySourceDomain": "flv.example.org:8080",
                    "RelaySourceParams": {},
                }
            ],
        },
    ]
    table = call(api, "relay v3 show --vhost push.example.com").stdout
    assert "10.0.0.2:1936" in table and "flv.example.org:8080" in table

    assert call(api, "relay v3 rm --vhost push.example.com --app live --group relay1").exit_code == 0
    shown = call_json(api, "relay v3 show --vhost push.example.com --app live")
    assert [g["Group"] for g in shown["Result"]["RelaySourceConfigList"][0]["GroupDetails"]] == ["backup"]
    assert call(api, "relay v3 rm --vhost push.example.com --app live").exit_code == 0
    shown = call_json(api, "relay v3 show --vhost push.example.com")
    assert shown["Result"]["RelaySourceConfigList"] == []


def test_relay_v3_set_without_vhost_targets_the_default_vhost(api: LocalApi) -> None:
    add_seed_domains(api)
    # The default vhost comes from the settings (here the environment), like the node's.
    env = {"LIVERELAY_MEDIA_DEFAULT_VHOST": "push.example.com"}
    with_env = invoke(
        ["relay", "v3", "set", "--app", "live", "--group", "g1", "--server", "rtmp://example.org"],
        {"ACCESS_KEY_ID": TEST_AK, "ACCESS_KEY_SECRET": TEST_SK, "LIVERELAY_ENDPOINT": api.host, **env},
    )
    assert with_env.exit_code == 0, with_env.output
    assert "set group g1 of push.example.com/live" in with_env.stdout
    shown = call_json(api, "relay v3 show --vhost push.example.com --app live")
    [config] = shown["Result"]["RelaySourceConfigList"]
    assert [g["Group"] for g in config["GroupDetails"]] == ["g1"]

    # Strict mode (no default vhost): the command asks for --vhost instead of guessing.
    strict = invoke(
        ["relay", "v3", "set", "--group", "g1", "--server", "rtmp://example.org"],
        {
            "ACCESS_KEY_ID": TEST_AK,
            "ACCESS_KEY_SECRET": TEST_SK,
            "LIVERELAY_ENDPOINT": api.host,
            "LIVERELAY_MEDIA_DEFAULT_VHOST": "",
        },
    )
    assert strict.exit_code == 2
    assert "give --vhost" in strict.stderr


def test_relay_v3_set_on_the_builtin_default_vhost(api: LocalApi) -> None:
    """A node reached by IP address relays through __defaultVhost__ (issue 9, section 10)."""
    result = call(api, "relay v3 set --app live --group g1 --server rtmp://example.org")
    assert result.exit_code == 0, result.output
    assert "set group g1 of __defaultVhost__/live" in result.stdout
    shown = call_json(api, "relay v3 show --vhost __defaultVhost__ --app live")
    [config] = shown["Result"]["RelaySourceConfigList"]
    assert config["Vhost"] == "__defaultVhost__"


def test_relay_v3_bad_server_is_a_usage_error(api: LocalApi) -> None:
    bad = call(api, "relay v3 set --vhost v --group g --server srt://x:1")
    assert bad.exit_code == 2
    assert bad.stderr.startswith("error: --server")


def test_relay_v4_commands(api: LocalApi) -> None:
    add_seed_domains(api)
    created = call_json(
        api,
        "relay v4 create --domain pull.example.com --app live --stream example_stream"
        " --src rtmp://live.example.com --start 1683518058 --end 2023-05-11T03:54:18Z",
    )
    assert created["Result"]["TaskId"]
    for i in range(4):
        result = call(
            api,
            f"relay v4 create --domain pull.example.com --app live --stream s{i}"
            f" --src rtmp://o{i}.example/live --src srt://b.example:9000",
        )
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"created pull.example.com/live/s{i} (TaskId ")

    updated = call(
        api,
        "relay v4 update --domain pull.example.com --app live --stream example_stream --src rtmp://new.example/live",
    )
    assert updated.exit_code == 0, updated.output

    page = call_json(api, "relay v4 list --domain pull.example.com --page 2 --size 2")
    assert page["Result"]["Pagination"] == {"PageCur": 2, "PageSize": 2, "PageTotal": 3, "TotalCount": 5}
    assert len(page["Result"]["List"]) == 2
    everything = call_json(api, "relay v4 list --domain pull.example.com --all")
    by_stream = {item["Stream"]: item for item in everything}
    assert sorted(by_stream) == ["example_stream", "s0", "s1", "s2", "s3"]
    assert by_stream["example_stream"]["SrcAddrS"] == ["rtmp://new.example/live"]
    assert "StartTime" not in by_stream["example_stream"] or not by_stream["example_stream"]["StartTime"]
    assert by_stream["s2"]["SrcAddrS"] == ["rtmp://o2.example/live", "srt://b.example:9000"]
    table = call(api, "relay v4 list --domain pull.example.com").stdout
    assert "5 in all" in table and "o3.example" in table

    assert call(api, "relay v4 rm --domain pull.example.com --app live --stream s0").exit_code == 0
    left = call_json(api, "relay v4 list --domain pull.example.com --all")
    assert "s0" not in {item["Stream"] for item in left}


def test_api_errors_print_code_message_request_id(api: LocalApi) -> None:
    result = call(
        api, "relay v4 create --domain nowhere.example.com --app live --stream s --src rtmp://o/live"
    )
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert line.startswith("error: RequestForbidden")
    assert line.endswith(")")  # ... (RequestId)
    assert "Traceback" not in result.output
    half = call(api, "relay v4 create --domain d --app a --stream s --src rtmp://o/a --start 1700000000")
    assert half.exit_code == 2
    assert "both --start and --end" in half.stderr


def test_missing_credentials_and_unreachable_endpoint(tmp_path: Path) -> None:
    no_keys = invoke(["domain", "list"], {"ACCESS_KEY_ID": "", "ACCESS_KEY_SECRET": ""})
    assert no_keys.exit_code == 2
    assert no_keys.stderr.startswith("error: no credentials")
    from tests.conftest import free_port

    down = invoke(
        ["relay", "status", "--endpoint", f"127.0.0.1:{free_port()}", "--timeout", "1"],
        {"ACCESS_KEY_ID": TEST_AK, "ACCESS_KEY_SECRET": TEST_SK},
    )
    assert down.exit_code == 1
    assert down.stderr.startswith("error: DescribeRelayStatus: cannot connect")


def test_relay_status_without_relays(api: LocalApi) -> None:
    assert call_json(api, "relay", "status")["Result"]["RelayStatusList"] == []
    assert "relays (0)" in call(api, "relay", "status").stdout
    as_url = call(api, "status", "--endpoint", f"http://{api.host}/")  # top-level alias, pasted URL
    assert as_url.exit_code == 0, as_url.output
    assert "relays (0)" in as_url.stdout
    watched = call(api, "relay", "status", "--watch", "--interval", "0.1", "--count", "2")
    assert watched.exit_code == 0
    assert "relays (0)" in watched.stdout


def test_status_table_renders_status_rows() -> None:
    """Rows as DescribeRelayStatus sends them (a V3 row and a sparse V4 row) fill every column."""
    response = {
        "Result": {
            "RelayStatusList": [
                {
                    "Type": "play",
                    "Vhost": "v",
                    "App": "live",
                    "Stream": "cam1",
                    "State": "up",
                    "SourceUrl": "rtmp://o2/live/cam1",
                    "SourceIndex": 1,
                    "Attempts": 3,
                    "LastError": "connect: [/live] [bold]refused",
                    "UpSince": "2024-01-01T00:00:00Z",
                    "Bitrate": 2_160_000,
                    "Viewers": 7,
                    "Switches": 2,
                },
                {
                    "Type": "fixed",
                    "Stream": "cam2",
                    "State": "retrying",
                    "SourceIndex": 0,
                    "Attempts": 1,
                    "UpSince": "2024-01-01T00:00:00Z",
                    "Viewers": 0,
                },
            ]
        }
    }
    rows = status_rows(response)
    assert len(rows) == 2
    from rich.console import Console

    console = Console(width=250, record=True, color_system=None)
    console.print(status_table(rows))
    text = console.export_text()
    for expected in (
        "v/live/cam1",
        "play",
        "up",
        "rtmp://o2/live/cam1",
        "connect: [/live] [bold]refused",
        "2,160k",
        "cam2",
        "retrying",
        "fixed",
    ):
        assert expected in text, expected
    header = next(line for line in text.splitlines() if "Attempts" in line)
    for column in (
        "Stream",
        "Type",
        "State",
        "Source",
        "Attempts",
        "Last error",
        "Up for",
        "Bitrate",
        "Viewers",
        "Switches",
    ):
        assert column in header


def test_age() -> None:
    start = 1704067200  # 2024-01-01T00:00:00Z
    assert age(start, now=start + 5) == "5s"
    assert age("2024-01-01T00:00:00Z", now=start + 125) == "2m05s"
    assert age("2024-01-01T00:00:00+00:00", now=start + 3 * 3600 + 120) == "3h02m"
    assert age(start, now=start + 50 * 3600) == "2d02h"
    assert age("yesterday") == "yesterday"


def test_parse_time() -> None:
    assert parse_time("1683518058", "--start") == 1683518058
    assert parse_time("2023-05-08T03:54:18Z", "--start") == 1683518058
    assert parse_time("2023-05-08T11:54:18+08:00", "--start") == 1683518058
    assert parse_time("2023-05-08T03:54:18", "--start") == 1683518058  # no offset = UTC
    assert parse_time(None, "--start") is None


# -- serve ---------------------------------------------------------------------------------------


def run_cli_process(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return run_liverelay(args, timeout=timeout)


def test_serve_bad_config_exits_2_without_traceback(tmp_path: Path) -> None:
    bad_listen = run_cli_process(["serve", "--data-dir", str(tmp_path), "--api-listen", "nonsense"])
    assert bad_listen.returncode == 2
    assert bad_listen.stderr.startswith("error: bad configuration:")
    assert "Traceback" not in bad_listen.stderr
    config = tmp_path / "bad.toml"
    config.write_text("[relay]\nno_such_setting = 1\n")
    bad_key = run_cli_process(["serve", "--data-dir", str(tmp_path), "--config", str(config)])
    assert bad_key.returncode == 2
    assert "relay.no_such_setting" in bad_key.stderr
    assert "Traceback" not in bad_key.stderr


def test_serve_busy_port_and_unsupported_database(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli_process(
            [
                "serve",
                "--data-dir",
                str(tmp_path),
                "--api-listen",
                f"127.0.0.1:{port}",
                "--http-listen",
                "127.0.0.1:0",
                "--rtmp-listen",
                "127.0.0.1:0",
            ]
        )
    assert result.returncode == 1
    assert "error: cannot start the node:" in result.stderr
    assert "Traceback" not in result.stderr
    config = tmp_path / "pg.toml"
    # PostgreSQL is supported now (docs/cluster.md); a scheme this build has no store for is not.
    config.write_text('database_url = "mysql://db.example/liverelay"\n')
    keys = invoke(["keys", "list", "--data-dir", str(tmp_path), "--config", str(config)])
    assert keys.exit_code == 2
    assert keys.stderr.startswith("error: bad configuration:")
