"""The pullers connect to the addresses the source policy checked, never to a new lookup.

`use_checked` is what `SourcePolicy.check_url` leaves for the puller of its task; here it
names a host that does not resolve at all (`origin.invalid`), so a puller that looked the
name up again could not connect. Real sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from tests.integration.test_sources_flv import FIXTURE, Sink, fast_settings, serve

from liverelay.sources.base import SourceError
from liverelay.sources.flv import pull as flv_pull
from liverelay.sources.policy import CheckedOrigin, use_checked
from liverelay.sources.rtmp import pull as rtmp_pull


async def test_flv_puller_connects_to_the_checked_address_keeping_the_host_header() -> None:
    hosts: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        hosts.append(request.headers.get("Host", ""))
        return web.Response(body=FIXTURE.read_bytes(), content_type="video/x-flv")

    async with serve(handler) as base:
        port = int(base.rsplit(":", 1)[1])
        use_checked(CheckedOrigin("origin.invalid", ("127.0.0.1",)))
        sink = Sink()
        await asyncio.wait_for(
            flv_pull(f"http://origin.invalid:{port}/live/s.flv", sink, settings=fast_settings()), 10
        )
    assert sink.frames
    assert hosts == [f"origin.invalid:{port}"]


async def test_rtmp_puller_connects_to_the_checked_address() -> None:
    accepted = asyncio.Event()

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        use_checked(CheckedOrigin("origin.invalid", ("::1", "127.0.0.1")))  # first refuses: next is tried
        with pytest.raises(SourceError) as info:
            await asyncio.wait_for(
                rtmp_pull(f"rtmp://origin.invalid:{port}/live/s", Sink(), settings=fast_settings()), 10
            )
    finally:
        server.close()
    assert accepted.is_set()
    assert info.value.reason == "eof"  # it got there: connected, then the origin hung up


@pytest.mark.parametrize(
    "url",
    [
        "rtmp://0.0.0.0:1935/live/s",
        "http://0.0.0.0:8080/live/s.flv",
        "http://[::ffff:169.254.169.254]/a/b.flv",
    ],
)
async def test_a_puller_run_without_the_relay_checks_the_policy_itself(url: str) -> None:
    pull = rtmp_pull if url.startswith("rtmp") else flv_pull
    with pytest.raises(SourceError) as info:
        await asyncio.wait_for(pull(url, Sink(), settings=fast_settings()), 10)
    assert info.value.reason == "policy"


async def test_a_check_of_another_host_is_not_used() -> None:
    use_checked(CheckedOrigin("other.invalid", ("127.0.0.1",)))
    with pytest.raises(SourceError) as info:
        await asyncio.wait_for(
            flv_pull("http://origin.invalid:1/live/s.flv", Sink(), settings=fast_settings()), 10
        )
    assert info.value.reason == "connect"  # origin.invalid itself was looked up (and does not exist)
