"""The stream actions against a real `liverelay serve` with a real ffmpeg publisher,
driven by the official Volcengine SDK (its GET actions sign the query string) and by
ours: list, state, kill, forbid (the publisher is refused) / resume, ended streams."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import TEST_AK, TEST_SK, NodeProcess, ffmpeg_publish, stop_process, wait_until

from liverelay.sdk import LiveService as OurLiveService

volc = pytest.importorskip("volcengine.live.v20230101.live_service")


@pytest.fixture
def node(node_factory: Callable[..., NodeProcess]) -> NodeProcess:
    # The tests poll the API while they wait for state: the default 10 requests/s per key
    # would throttle them on a fast machine (throttling has its own tests).
    limits = {"LIVERELAY_API_RATE_LIMIT_PER_S": "1000", "LIVERELAY_API_RATE_BURST": "1000"}
    return node_factory(extra_env=limits)


def official(node: NodeProcess) -> Any:
    service = volc.LiveService()
    service.set_ak(TEST_AK)
    service.set_sk(TEST_SK)
    service.set_host(node.api_host)
    service.set_scheme("http")
    return service


def test_stream_actions_with_the_official_sdk(
    node: NodeProcess, sample_flv: Path, ffmpeg: str, tmp_path: Path
) -> None:
    sdk = official(node)
    ours = OurLiveService(node.api_host, TEST_AK, TEST_SK, scheme="http", max_retries=0)
    vhost = "__defaultVhost__"

    def listed() -> list[dict[str, Any]]:
        result = sdk.describe_live_stream_info_by_page({"PageNum": 1, "PageSize": 10, "Vhost": vhost})
        return list(result["Result"]["StreamInfoList"])

    assert listed() == []
    with ffmpeg_publish(ffmpeg, sample_flv, node.rtmp_url("live", "cam1")) as publisher:
        rows = wait_until(
            lambda: [r for r in listed() if r["Stream"] == "cam1" and r["VideoCodec"]],
            15,
            "cam",
            interval=0.2,
        )
        row = rows[0]
        assert row["SourceType"] == "push" and row["App"] == "live" and row["Vhost"] == vhost
        assert row["VideoCodec"] == "avc" and row["AudioCodec"] == "aac"
        assert row["PreviewURL"] == f"http://127.0.0.1:{node.http_port}/live/cam1.flv"
        # Filters: SourceType relay lists nothing, a fuzzy stream name finds it, a strict partial one not.
        relay = sdk.describe_live_stream_info_by_page({"PageNum": 1, "PageSize": 10, "SourceType": "relay"})
        assert relay["Result"]["StreamInfoList"] == []
        fuzzy = sdk.describe_live_stream_info_by_page(
            {"PageNum": 1, "PageSize": 10, "Stream": "cam", "QueryType": "fuzzy"}
        )
        assert [r["Stream"] for r in fuzzy["Result"]["StreamInfoList"]] == ["cam1"]
        strict = sdk.describe_live_stream_info_by_page({"PageNum": 1, "PageSize": 10, "Stream": "cam"})
        assert strict["Result"]["RoughCount"] == 0
        # Our SDK sends the same GET action.
        page = ours.describe_live_stream_info_by_page({"PageNum": 1, "PageSize": 5})
        assert page["Result"]["RoughCount"] == 1

        state = sdk.describe_live_stream_state({"Vhost": vhost, "App": "live", "Stream": "cam1"})
        assert state["Result"] == {"stream_state": "online", "type": "push"}

        # KillStream ends the publisher's connection.
        sdk.kill_stream({"Vhost": vhost, "App": "live", "Stream": "cam1"})
        publisher.wait(timeout=15)
        assert publisher.returncode != 0

    closed = sdk.describe_closed_stream_info_by_page({"PageNum": 1, "PageSize": 10, "Vhost": vhost})
    items = closed["Result"]["StreamInfoList"]
    assert (items[0]["Stream"], items[0]["Reason"], items[0]["SourceType"]) == ("cam1", "killed", "push")

    # ForbidStream: the next publish is refused until ResumeStream.
    end = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    sdk.forbid_stream({"Vhost": vhost, "App": "live", "Stream": "cam1", "EndTime": end})
    state = sdk.describe_live_stream_state({"Vhost": vhost, "App": "live", "Stream": "cam1"})
    assert state["Result"]["stream_state"] == "forbidden"
    forbidden = sdk.describe_forbidden_stream_info_by_page({"PageNum": 1, "PageSize": 10})["Result"]
    assert forbidden["RoughCount"] == 1
    entry = forbidden["StreamInfoList"][0]
    assert (entry["App"], entry["Stream"], entry["EndTime"]) == ("live", "cam1", end)
    args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-i", str(sample_flv), "-c", "copy"]
    refused = subprocess.run(
        [*args, "-f", "flv", node.rtmp_url("live", "cam1")], capture_output=True, timeout=30, check=False
    )
    assert refused.returncode != 0
    assert "forbidden" in node.log()
    ours.resume_stream({"Vhost": vhost, "App": "live", "Stream": "cam1"})
    assert ours.describe_forbidden_stream_info_by_page({"PageNum": 1})["Result"]["StreamInfoList"] == []
    proc = subprocess.Popen(
        [*args[:5], "-stream_loop", "-1", *args[5:], "-f", "flv", node.rtmp_url("live", "cam1")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Live for 2 s: the history samples the hub once a second (shorter sessions may be missed).
        wait_until(lambda: [r for r in listed() if r["UptimeS"] >= 2], 15, "cam1 again", interval=0.2)
    finally:
        stop_process(proc)

    def last_ended() -> list[dict[str, Any]]:
        page = sdk.describe_closed_stream_info_by_page({"PageNum": 1, "PageSize": 1, "Sort": "desc"})
        items = page["Result"]["StreamInfoList"]
        return items if items and items[0]["Reason"] == "ended" else []

    ended = wait_until(last_ended, 10, "the second session in the history", interval=0.2)
    assert ended[0]["Stream"] == "cam1" and ended[0]["EndTime"] >= ended[0]["StartTime"]


def test_get_actions_are_signed_and_checked(node: NodeProcess) -> None:
    """The query string is part of the signature: a changed parameter is refused; a POST-only
    action is not served over GET; a value the schema refuses is the Volcengine error."""
    import httpx

    ours = OurLiveService(node.api_host, TEST_AK, TEST_SK, scheme="http", max_retries=0)
    prepared = ours.prepare("DescribeLiveStreamInfoByPage", {"PageNum": 1, "PageSize": 10})
    assert prepared.method == "GET"
    ok = httpx.get(prepared.url, headers=prepared.headers)
    assert ok.status_code == 200, ok.text
    tampered = httpx.get(prepared.url.replace("PageSize=10", "PageSize=11"), headers=prepared.headers)
    assert tampered.status_code == 401
    assert tampered.json()["ResponseMetadata"]["Error"]["Code"] == "SignatureDoesNotMatch"
    bad = ours.prepare("DescribeLiveStreamInfoByPage", {"PageNum": 1, "PageSize": 1001})
    answer = httpx.get(bad.url, headers=bad.headers)
    assert answer.status_code == 400
    assert answer.json()["ResponseMetadata"]["Error"]["Code"] == "InvalidParam.OutOfRange"
    # A parameter given twice is refused, never resolved (the signer and we could each read another).
    from liverelay.api.signing import sign_request

    query = [("Action", "DescribeLiveStreamInfoByPage"), ("Version", "2023-01-01"), ("PageNum", "1")]
    query.append(("PageNum", "2"))
    headers = sign_request(
        method="GET",
        host=node.api_host,
        path="/",
        query=query,
        body=b"",
        access_key=TEST_AK,
        secret_key=TEST_SK,
    )
    url = f"http://{node.api_host}/?" + "&".join(f"{k}={v}" for k, v in query)
    twice = httpx.get(url, headers=headers)
    assert twice.status_code == 400 and twice.json()["ResponseMetadata"]["Error"]["Code"] == "InvalidParam"
    post_only = ours.prepare("KillStream", {"Vhost": "__defaultVhost__", "App": "a", "Stream": "b"})
    as_get = httpx.get(post_only.url, headers=post_only.headers)
    assert as_get.status_code == 405


def test_cli_stream_commands(node: NodeProcess, sample_flv: Path, ffmpeg: str) -> None:
    from click.testing import CliRunner

    from liverelay.cli import cli

    env = {"ACCESS_KEY_ID": TEST_AK, "ACCESS_KEY_SECRET": TEST_SK, "LIVERELAY_ENDPOINT": node.api_host}

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, ["stream", *args], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    where = ["--vhost", "__defaultVhost__", "--app", "live", "--stream", "cli1"]
    with ffmpeg_publish(ffmpeg, sample_flv, node.rtmp_url("live", "cli1")) as publisher:
        wait_until(lambda: "cli1" in run("list"), 15, "cli1 in `stream list`", interval=0.2)
        assert "online push" in run("state", *where)
        assert (
            "OutOfRange"
            in CliRunner().invoke(cli, ["stream", "forbid", *where, "--until", "2099-01-01"], env=env).output
        )
        until = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert "forbidden live/cli1" in run("forbid", *where, "--until", until)
        publisher.wait(timeout=15)  # forbidding cuts the current publisher off
    assert "forbidden" in run("state", *where)
    assert "cli1" in run("forbidden", "--json")
    assert "resumed live/cli1" in run("resume", *where)
    assert "offline push" in run("state", *where)
    assert "cli1" in run("closed")
