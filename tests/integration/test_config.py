"""Settings: precedence (flags > env > TOML > defaults), range checks that stop `liverelay serve`
with exit code 2 and one line naming the setting, and `liverelay config show`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import run_liverelay

from liverelay.config import ConfigError, Settings, load_settings

# (case id, flags, env, TOML text, the setting the error must name, the bad value as printed)
BAD_SETTINGS: list[tuple[str, list[str], dict[str, str], str, str, str]] = [
    ("listen-flag", ["--api-listen", "nonsense"], {}, "", "api.listen", "nonsense"),
    ("listen-port-env", [], {"LIVERELAY_HTTP_LISTEN": "127.0.0.1:99999"}, "", "media.http_listen", "99999"),
    ("listen-v6-unbracketed", [], {"LIVERELAY_RTMP_LISTEN": "::1:1935"}, "", "media.rtmp_listen", "::1:1935"),
    ("chunk-small-env", [], {"LIVERELAY_MEDIA_RTMP_CHUNK_SIZE": "100"}, "", "media.rtmp_chunk_size", "100"),
    ("chunk-big-file", [], {}, "[media]\nrtmp_chunk_size = 70000\n", "media.rtmp_chunk_size", "70000"),
    ("negative-size", [], {"LIVERELAY_MEDIA_GOP_MAX_BYTES": "-5"}, "", "media.gop_max_bytes", "-5"),
    ("zero-queue", [], {}, "[media]\nviewer_queue_bytes = 0\n", "media.viewer_queue_bytes", "0"),
    ("bad-cidr-file", [], {}, '[relay]\ndeny_cidrs = ["10.0.0.0/33"]\n', "relay.deny_cidrs", "10.0.0.0/33"),
    ("bad-cidr-env", [], {"LIVERELAY_RELAY_ALLOW_CIDRS": "10.0.0.0/8,nope"}, "", "relay.allow_cidrs", "nope"),
    ("timeout-zero-env", [], {"LIVERELAY_RELAY_CONNECT_TIMEOUT_S": "0"}, "", "relay.connect_timeout_s", "0"),
    ("timeout-zero-file", [], {}, "[webhook]\ntimeout_s = 0\n", "webhook.timeout_s", "0"),
    ("negative-linger", [], {"LIVERELAY_RELAY_LINGER_S": "-1"}, "", "relay.linger_s", "-1"),
    ("backoff-order", [], {"LIVERELAY_RELAY_BACKOFF_MAX_S": "0.1"}, "", "relay.backoff_max_s", "0.1"),
    ("burst-zero", [], {"LIVERELAY_API_RATE_BURST": "0"}, "", "api.rate_burst", "0"),
    ("not-a-number", [], {"LIVERELAY_API_MAX_SKEW_S": "soon"}, "", "api.max_skew_s", "soon"),
    ("not-a-bool", [], {"LIVERELAY_MEDIA_GOP_CACHE": "maybe"}, "", "media.gop_cache", "maybe"),
    ("webhook-scheme", [], {"LIVERELAY_WEBHOOK_URL": "ftp://hooks.example/x"}, "", "webhook.url", "ftp://"),
    ("log-level", [], {"LIVERELAY_LOG_LEVEL": "loud"}, "", "log_level", "loud"),
    ("db-timeout-zero", [], {"LIVERELAY_DATABASE_TIMEOUT_S": "0"}, "", "database_timeout_s", "0"),
    ("db-pool-zero", [], {"LIVERELAY_DATABASE_POOL_SIZE": "0"}, "", "database_pool_size", "0"),
    ("unknown-key", [], {}, "[relay]\nno_such_setting = 1\n", "relay.no_such_setting", ""),
]


@pytest.mark.parametrize(
    ("flags", "env", "toml", "setting", "value"),
    [case[1:] for case in BAD_SETTINGS],
    ids=[case[0] for case in BAD_SETTINGS],
)
def test_bad_setting_stops_serve_with_one_line(
    tmp_path: Path, flags: list[str], env: dict[str, str], toml: str, setting: str, value: str
) -> None:
    args = ["serve", "--data-dir", str(tmp_path / "data")]
    # Port 0 everywhere the case does not test the listen address: a wrongly accepted
    # setting then starts a node (and times out here) instead of clashing with another test.
    for flag, name in (("--api-listen", "api"), ("--http-listen", "http"), ("--rtmp-listen", "rtmp")):
        if flag not in flags and f"LIVERELAY_{name.upper()}_LISTEN" not in env:
            args += [flag, "127.0.0.1:0"]
    if toml:
        config = tmp_path / "node.toml"
        config.write_text(toml)
        args += ["--config", str(config)]
    result = run_liverelay([*args, *flags], env=env, timeout=30)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: bad configuration:"), lines[0]
    assert setting in lines[0]
    assert value in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists(), "a bad setting must stop serve before it touches the store"


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        'log_level = "WARNING"\n'
        "[relay]\nlinger_s = 7\nconnect_timeout_s = 2\nno_media_timeout_s = 9\n"
        '[media]\nhttp_listen = "127.0.0.1:7001"\n'
    )
    env = {
        "LIVERELAY_RELAY_LINGER_S": "5",
        "LIVERELAY_RELAY_CONNECT_TIMEOUT_S": "4",
        "LIVERELAY_HTTP_LISTEN": "127.0.0.1:7002",
        "LIVERELAY_DATA_DIR": str(tmp_path / "from-env"),
    }
    flags = {"relay.linger_s": 3, "data_dir": str(tmp_path / "from-flag"), "api.listen": None}
    s = load_settings(config, env=env, overrides=flags)
    assert s.relay.linger_s == 3.0  # flag > env > file
    assert s.relay.connect_timeout_s == 4.0  # env > file
    assert s.relay.no_media_timeout_s == 9.0  # file > default
    assert s.relay.first_frame_timeout_s == Settings().relay.first_frame_timeout_s  # default
    assert s.media.http_listen == "127.0.0.1:7002"  # the env alias beats the file
    assert s.data_dir == tmp_path / "from-flag"
    assert s.api.listen == "127.0.0.1:8180"  # a flag given as None is no flag
    assert s.log_level == "WARNING"
    # Environment names: LIVERELAY_<SECTION>_<KEY>, lists comma-separated, booleans in words.
    s = load_settings(
        env={"LIVERELAY_RELAY_DENY_CIDRS": "10.0.0.0/8, ::1/128", "LIVERELAY_RELAY_FAILBACK": "off"}
    )
    assert s.relay.deny_cidrs == ["10.0.0.0/8", "::1/128"]
    assert s.relay.failback is False


def test_settings_alone_are_the_defaults_and_read_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVERELAY_RELAY_LINGER_S", "1")
    assert Settings().relay.linger_s == 15.0
    assert load_settings().relay.linger_s == 1.0  # load_settings reads os.environ by default


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.toml", env={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[relay\n")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(broken, env={})


def test_config_show_sources_and_masked_secrets(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        'database_url = "postgresql://relay:hunter2@db.example/liverelay"\n'
        "[relay]\nlinger_s = 7\n"
        "[webhook]\nretries = 5\n"
    )
    env = {
        "LIVERELAY_RELAY_LINGER_S": "5",
        "LIVERELAY_WEBHOOK_URL": "https://ops:s3cret@hooks.example/in?token=abc123&team=live",
    }
    result = run_liverelay(
        ["config", "show", "--json", "--config", str(config), "--rtmp-listen", "127.0.0.1:1936"], env=env
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["relay.linger_s"] == {"value": 5.0, "source": "env"}
    assert shown["webhook.retries"] == {"value": 5, "source": "file"}
    assert shown["media.rtmp_listen"] == {"value": "127.0.0.1:1936", "source": "flag"}
    assert shown["relay.backoff_max_s"] == {"value": 30.0, "source": "default"}
    assert shown["database_url"]["source"] == "file"
    assert "hunter2" not in result.stdout and "s3cret" not in result.stdout and "abc123" not in result.stdout
    assert shown["database_url"]["value"] == "postgresql://relay:***@db.example/liverelay"
    assert shown["webhook.url"]["value"] == "https://ops:***@hooks.example/in?token=***&team=live"
    assert set(shown) >= {"data_dir", "api.listen", "media.rtmp_chunk_size", "relay.deny_cidrs"}
    assert shown["database_pool_size"] == {"value": 5, "source": "default"}

    table = run_liverelay(["config", "show", "--config", str(config)], env=env)
    assert table.returncode == 0, table.stderr
    assert "hunter2" not in table.stdout
    linger = next(line for line in table.stdout.splitlines() if "relay.linger_s" in line)
    assert "5.0" in linger and "env" in linger


def test_config_show_refuses_a_bad_setting_like_serve() -> None:
    result = run_liverelay(["config", "show"], env={"LIVERELAY_MEDIA_RTMP_CHUNK_SIZE": "1"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: bad configuration: setting media.rtmp_chunk_size = '1' "
        "(from env LIVERELAY_MEDIA_RTMP_CHUNK_SIZE): Input should be greater than or equal to 128"
    ]
