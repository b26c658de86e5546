"""URL authentication against a real `liverelay serve`: keys set and URLs generated with the
official volcengine SDK; ffmpeg publishes and ffprobe plays (RTMP, HTTP-FLV) with the
generated URLs; missing, wrong and expired signatures are refused with a log line naming
the reason; a backup key is honoured during a rotation; the open-publish default of a
node whose RTMP listener is not loopback-only."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import (
    TEST_AK,
    TEST_SK,
    NodeProcess,
    ffmpeg_publish,
    run_liverelay,
    start_node,
)
from tests.integration.relay_helpers import ffprobe_video
from tests.integration.rtmp_helpers import RtmpNode, RtmpTestClient

from liverelay.media.rtmp import messages as m
from liverelay.store import AuthKeyEntry, UrlAuthConfig
from liverelay.urlauth import UrlAuthVerifier, signed_query

VHOST = "__defaultVhost__"  # a node reached by IP: the default vhost
Factory = Callable[..., NodeProcess]


@pytest.fixture(autouse=True)
def _no_sdk_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Environment credentials and ~/.volc would override the ones the SDK is given.
    monkeypatch.delenv("VOLC_ACCESSKEY", raising=False)
    monkeypatch.delenv("VOLC_SECRETKEY", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


def official(node: NodeProcess) -> Any:
    from volcengine.live.v20230101.live_service import LiveService

    service = LiveService(node.api_host, TEST_AK, TEST_SK)
    service.set_scheme("http")
    return service


def ok(response: Any) -> dict[str, Any]:
    assert "Error" not in response["ResponseMetadata"], response
    return response.get("Result", {})  # type: ignore[no-any-return]


def set_keys(node: NodeProcess, scene: str, *keys: str) -> None:
    body = {
        "Vhost": VHOST,
        "SceneType": scene,
        "AuthDetailList": [{"SecretKey": k, "EncryptionAlgorithm": "md5"} for k in keys],
        "PushPullEnable": True,
    }
    assert ok(official(node).update_auth_key(body)) == {}


def push_url(node: NodeProcess, stream: str) -> str:
    result = ok(official(node).generate_push_url({"Vhost": VHOST, "App": "live", "Stream": stream}))
    [url] = result["PushURLList"]
    assert url.startswith(f"rtmp://127.0.0.1:{node.rtmp_port}/live/{stream}?volcTime=")
    return url  # type: ignore[no-any-return]


def wait_log(node: NodeProcess, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = node.log()
        if text in log:
            return log
        time.sleep(0.1)
    raise AssertionError(f"no {text!r} in the node log:\n{node.log()[-3000:]}")


def refused_publish(ffmpeg: str, sample: Path, url: str) -> str:
    """ffmpeg must give up on its own (the node refused): its error output."""
    with ffmpeg_publish(ffmpeg, sample, url, loop=False) as proc:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"ffmpeg kept publishing to {url}") from None
        assert proc.returncode != 0
        return proc.stderr.read().decode(errors="replace") if proc.stderr else ""


def play_refused(ffprobe: str, url: str) -> None:
    with pytest.raises(AssertionError, match="failed"):
        ffprobe_video(ffprobe, url, timeout=30)


def http_status(url: str, method: str = "GET") -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_published(
    node: NodeProcess, stream: str, proc: subprocess.Popen[bytes], timeout: float = 30
) -> None:
    """Until the node has the stream (HEAD on its FLV URL answers 200, without becoming a viewer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"ffmpeg exited: {node.log()[-2000:]}"
        if http_status(node.flv_url("live", stream), "HEAD") == 200:
            return
        time.sleep(0.1)
    raise AssertionError(f"live/{stream} was not published:\n{node.log()[-2000:]}")


@pytest.fixture
def published(node: NodeProcess, ffmpeg: str, sample_flv: Path, ffprobe: str) -> Iterator[NodeProcess]:
    """A node with a push key and stream live/s1 published with the generated push URL."""
    set_keys(node, "push", "pushkey1")
    with ffmpeg_publish(ffmpeg, sample_flv, push_url(node, "s1")) as proc:
        wait_published(node, "s1", proc)
        # No pull key yet: playing is open, which shows the signed publish got in.
        info = ffprobe_video(ffprobe, node.flv_url("live", "s1"), timeout=40)
        assert info["codec_name"] == "h264" and info["frames"] > 0
        assert proc.poll() is None
        yield node


def test_publish_needs_a_valid_signature(published: NodeProcess, ffmpeg: str, sample_flv: Path) -> None:
    node = published
    base = node.rtmp_url("live", "s2")
    refused_publish(ffmpeg, sample_flv, base)
    wait_log(node, "refused: missing signature")
    wrong = signed_query("md5", "live", "s2", "notthekey", int(time.time()) + 600)
    refused_publish(ffmpeg, sample_flv, f"{base}?{wrong}")
    log = wait_log(node, "refused: signature mismatch")
    expired = signed_query("md5", "live", "s2", "pushkey1", int(time.time()) - 5)
    refused_publish(ffmpeg, sample_flv, f"{base}?{expired}")
    log = wait_log(node, "refused: signature expired")
    # The log names the reason, never a key or the expected signature.
    assert "pushkey1" not in log
    right = signed_query("md5", "live", "s2", "pushkey1", int(time.time()) + 600).split("volcSecret=")[1]
    assert right not in log


def test_play_needs_a_valid_signature_on_rtmp_and_http_flv(published: NodeProcess, ffprobe: str) -> None:
    node = published
    set_keys(node, "pull", "pullkey1")  # applies at once, no restart
    result = ok(official(node).generate_play_url({"Domain": "127.0.0.1", "App": "live", "Stream": "s1"}))
    urls = {u["Protocol"]: u["URL"] for u in result["URLList"]}
    assert set(urls) == {"rtmp", "flv", "hls"}
    assert urls["hls"].startswith(f"http://127.0.0.1:{node.http_port}/live/s1.m3u8?volcTime=")
    assert ffprobe_video(ffprobe, urls["rtmp"], timeout=40)["frames"] > 0
    assert ffprobe_video(ffprobe, urls["flv"], timeout=40)["frames"] > 0

    play_refused(ffprobe, node.rtmp_url("live", "s1"))
    wait_log(node, f"rtmp play {VHOST}/live/s1 from")
    wait_log(node, "refused: missing signature")
    play_refused(ffprobe, node.flv_url("live", "s1"))
    assert http_status(node.flv_url("live", "s1")) == 403
    wrong = signed_query("md5", "live", "s1", "pushkey1", int(time.time()) + 600)  # the push key cannot play
    assert http_status(f"{node.flv_url('live', 's1')}?{wrong}") == 403
    wait_log(node, f"http play {VHOST}/live/s1 from")


def test_rotation_with_a_backup_key(
    published: NodeProcess, ffmpeg: str, sample_flv: Path, ffprobe: str
) -> None:
    node = published
    old_url = push_url(node, "rot")  # signed with pushkey1
    set_keys(node, "push", "pushkey2", "pushkey1")  # new primary, the old key as backup
    new_url = push_url(node, "rot2")
    assert "volcSecret=" in new_url and new_url.split("volcSecret=")[1] != old_url.split("volcSecret=")[1]
    for url, stream in ((old_url, "rot"), (new_url, "rot2")):
        with ffmpeg_publish(ffmpeg, sample_flv, url) as proc:
            wait_published(node, stream, proc)
            assert ffprobe_video(ffprobe, node.flv_url("live", stream), timeout=40)["frames"] > 0
            assert proc.poll() is None
    set_keys(node, "push", "pushkey2")  # rotation done: the old key is gone
    refused_publish(ffmpeg, sample_flv, old_url)
    with ffmpeg_publish(ffmpeg, sample_flv, push_url(node, "rot3")) as proc:
        wait_published(node, "rot3", proc)
        assert ffprobe_video(ffprobe, node.flv_url("live", "rot3"), timeout=40)["frames"] > 0


@pytest.mark.parametrize("open_publish", [False, True])
def test_public_rtmp_listener_refuses_unsigned_publish_by_default(
    tmp_path: Path, ffmpeg: str, sample_flv: Path, ffprobe: str, open_publish: bool
) -> None:
    # A wildcard listener has no address to write into generated URLs: url_host names it.
    config = '[media]\nurl_host = "127.0.0.1"\n' + ("open_publish = true\n" if open_publish else "")
    node = start_node(tmp_path / "public", config=config, rtmp_host="0.0.0.0")
    try:
        if not open_publish:
            log = wait_log(node, "not loopback-only")
            assert "media.open_publish = true" in log
            refused_publish(ffmpeg, sample_flv, node.rtmp_url("live", "open"))
            wait_log(node, "refused: no push key applies")
            # With a push key the signed URL publishes.
            set_keys(node, "push", "k1")
            url = push_url(node, "open")
        else:
            url = node.rtmp_url("live", "open")
        with ffmpeg_publish(ffmpeg, sample_flv, url) as proc:
            wait_published(node, "open", proc)
            assert ffprobe_video(ffprobe, node.flv_url("live", "open"), timeout=40)["frames"] > 0
            assert proc.poll() is None
        if open_publish:
            assert "not loopback-only" not in node.log()
    finally:
        node.kill(15)


def test_cli_auth_and_url(node: NodeProcess) -> None:
    env = {"ACCESS_KEY_ID": TEST_AK, "ACCESS_KEY_SECRET": TEST_SK, "LIVERELAY_ENDPOINT": node.api_host}
    done = run_liverelay(
        ["auth", "set", "--vhost", VHOST, "--scene", "push", "--key", "clikey1", "--backup-key", "clikey0"],
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "push keys of __defaultVhost__/* set (2 key(s), md5, enabled)" in done.stdout
    shown = run_liverelay(["auth", "show", "--vhost", VHOST], env=env)
    assert shown.returncode == 0, shown.stderr
    assert "clik..." in shown.stdout and "clikey1" not in shown.stdout  # keys are masked by default
    revealed = run_liverelay(["auth", "show", "--vhost", VHOST, "--reveal"], env=env)
    assert "clikey1" in revealed.stdout and "clikey0" in revealed.stdout

    pushed = run_liverelay(
        ["url", "push", "--vhost", VHOST, "--app", "live", "--stream", "c1", "--valid-duration", "120"],
        env=env,
    )
    assert pushed.returncode == 0, pushed.stderr
    line = pushed.stdout.splitlines()[0]
    assert line.startswith(f"rtmp://127.0.0.1:{node.rtmp_port}/live/c1?volcTime=")
    expires = int(line.split("volcTime=")[1].split("&")[0])
    assert time.time() < expires <= time.time() + 121
    assert line.endswith(signed_query("md5", "live", "c1", "clikey1", expires))

    played = run_liverelay(
        ["url", "play", "--domain", "127.0.0.1", "--app", "live", "--stream", "c1"], env=env
    )
    assert played.returncode == 0, played.stderr
    protocols = [ln.split()[0] for ln in played.stdout.splitlines() if ln and not ln.startswith("(")]
    assert protocols == ["rtmp", "flv", "hls"]

    bad = run_liverelay(["auth", "set", "--vhost", VHOST, "--scene", "push", "--key", "has space"], env=env)
    assert bad.returncode != 0 and "InvalidParam" in (bad.stdout + bad.stderr)


async def test_rtmp_refusal_status_codes() -> None:
    """The exact onStatus answers, read with our client session over a real socket:
    publish -> NetStream.Publish.BadName, play -> NetStream.Play.Failed (level error)."""
    keys = (AuthKeyEntry("k1", "md5"),)
    verifier = UrlAuthVerifier(
        [
            UrlAuthConfig(VHOST, "", "push", True, 600, keys, 0, 0),
            UrlAuthConfig(VHOST, "", "pull", True, 600, keys, 0, 0),
        ]
    )
    rtmp = await RtmpNode(urlauth=verifier).start()
    signed = signed_query("md5", "live", "s", "k1", int(time.time()) + 60)
    cases = [
        ({"publish": "s"}, m.PUBLISH_BAD_NAME),
        ({"publish": f"s?{signed}"}, m.PUBLISH_START),
        ({"play": "s"}, m.PLAY_FAILED),
        ({"play": f"s?{signed.replace('volcSecret=', 'volcSecret=0')}"}, m.PLAY_FAILED),
    ]
    try:
        for kwargs, code in cases:
            client = RtmpTestClient(rtmp.port, "live", **kwargs)
            try:
                await client.connect()
                await client.pump_until(lambda c=client: c.statuses, timeout=10)  # type: ignore[misc]
                assert client.codes()[0] == code, (kwargs, client.codes())
                if code != m.PUBLISH_START:
                    assert client.statuses[0].level == "error"
                    assert client.statuses[0].description == "Authentication failed"
            finally:
                client.close()
    finally:
        await rtmp.close()
