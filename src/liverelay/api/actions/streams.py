"""Volcengine's stream management actions, on this node's hub, plus DescribeNodeStatus.

DescribeLiveStreamInfoByPage, DescribeLiveStreamState and DescribeClosedStreamInfoByPage
are GET actions (parameters in the signed query string; api/app.py binds them from
there); KillStream, ForbidStream and ResumeStream are POST actions with a JSON body.
Streams come from the hub through `streamctl.StreamControl` (forbid list, ended-stream
history, kill); our extra result fields are in schemas/streams.py and docs/api.md.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

from ... import __version__
from ...hub.keys import SourceKind, StreamKey
from ...media.codecs import AUDIO_FORMAT_AAC, video_codec_name
from ...media.frame import Frame
from ...schemas.status import RelayStatusReport
from ...schemas.streams import (
    DESCRIBE_CLOSED_STREAM_INFO,
    DESCRIBE_FORBIDDEN_STREAM_INFO,
    DESCRIBE_LIVE_STREAM_INFO,
    DESCRIBE_NODE_STATUS,
    FORBID_STREAM,
    MAX_FORBID_S,
    STREAM_ADDRESS,
    ClosedStreamInfo,
    DescribeClosedStreamInfoByPageResult,
    DescribeForbiddenStreamInfoByPageResult,
    DescribeLiveStreamInfoByPageResult,
    DescribeLiveStreamStateResult,
    DescribeNodeStatusResult,
    LiveStreamInfo,
    StreamAddress,
    parse_rfc3339,
    rfc3339_ms,
)
from ...sources.base import redact_text
from ...streamctl import ClosedStream, SourceView, StreamControl, source_type
from ..binding import bind
from ..context import ActionContext, Result
from ..errors import ApiError, invalid_param, request_forbidden
from .vhosts import is_default_vhost


class SubscriberView(Protocol):
    protocol: str


class LiveStream(Protocol):
    """What the actions read of a live stream (hub.Stream)."""

    key: StreamKey
    bytes_in: int

    @property
    def source(self) -> SourceView | None: ...
    @property
    def subscribers(self) -> Sequence[SubscriberView]: ...
    @property
    def viewer_count(self) -> int: ...
    @property
    def video_header(self) -> Frame | None: ...
    @property
    def audio_header(self) -> Frame | None: ...
    @property
    def bytes_out(self) -> int: ...
    def bitrate(self) -> float: ...


class LiveHub(Protocol):
    """What the actions read of the hub (hub.Hub)."""

    def streams(self) -> Sequence[LiveStream]: ...
    def viewers_by_protocol(self) -> dict[str, int]: ...
    @property
    def bytes_in_total(self) -> int: ...
    @property
    def bytes_out_total(self) -> int: ...


class RelayReporter(Protocol):
    def status(self) -> RelayStatusReport: ...


def _control(ctx: ActionContext) -> StreamControl:
    if ctx.streams is None:
        raise ApiError(503, "ServiceUnavailable", "stream control is not running on this node")
    return ctx.streams


def _hub(ctx: ActionContext) -> LiveHub:
    hub: LiveHub = _control(ctx).hub  # type: ignore[assignment]  # the node's Hub is also a LiveHub
    return hub


def _vhost_of(ctx: ActionContext, req: StreamAddress) -> str:
    domain, vhost = req.get("Domain"), req.get("Vhost")
    if domain:
        record = ctx.store.domain_table.get(domain)
        if record is None:
            raise request_forbidden(f"Domain {domain[:120]!r} does not exist")
        return record.vhost
    if vhost and (is_default_vhost(ctx, vhost) or ctx.store.domain_table.has_vhost(vhost)):
        return vhost
    raise request_forbidden(f"Vhost {str(vhost)[:60]!r} does not exist")


def _filter_vhost(ctx: ActionContext, vhost: str | None, domain: str | None) -> str | None:
    """The vhost a listing is narrowed to ('' = none); an unknown Domain matches nothing."""
    if vhost:
        return vhost
    if domain:
        record = ctx.store.domain_table.get(domain)
        return record.vhost if record is not None else "\x00unknown"
    return None


def _matches(value: str, wanted: str | None, fuzzy: bool) -> bool:
    if not wanted:
        return True
    return wanted in value if fuzzy else value == wanted


def _relay_type(kind: SourceKind) -> str | None:
    return {SourceKind.RELAY_PLAY: "play", SourceKind.RELAY_FIXED: "fixed"}.get(kind)


def _audio_codec(header: Frame | None) -> str:
    if header is None or not header.payload:
        return ""
    fmt = header.payload[0] >> 4
    return "aac" if fmt == AUDIO_FORMAT_AAC else f"codec{fmt}"


def _domain_of(ctx: ActionContext, vhost: str) -> str:
    """A domain of `vhost` to show (its push domain first), else the vhost itself."""
    records = sorted(ctx.store.domain_table.domains_of(vhost), key=lambda r: r.type != "push")
    return records[0].domain if records else vhost


def _play_url(ctx: ActionContext, key: StreamKey) -> str:
    template = _control(ctx).listeners.get("http", "")
    return template.replace("{app}", key.app).replace("{stream}", key.name)


def _page(items: list[Any], page: int, size: int) -> list[Any]:
    start = (page - 1) * size
    return items[start : start + size]


def _live_info(ctx: ActionContext, stream: LiveStream, source: SourceView, ident: int) -> LiveStreamInfo:
    now = time.time()
    bps = int(stream.bitrate())
    viewers = Counter(sub.protocol for sub in stream.subscribers)
    info: LiveStreamInfo = {
        "ID": ident,
        "Vhost": stream.key.vhost,
        "Domain": _domain_of(ctx, stream.key.vhost),
        "App": stream.key.app,
        "Stream": stream.key.name,
        "SessionStartTime": rfc3339_ms(source.started_at),
        "OnlineUser": stream.viewer_count,
        "BandWidth": bps * stream.viewer_count // 1000,
        "Bitrate": bps // 1000,
        "PreviewURL": _play_url(ctx, stream.key),
        "SourceType": source_type(source.kind),
        "Source": redact_text(source.owner),
        "VideoCodec": video_codec_name(stream.video_header.payload) if stream.video_header else "",
        "AudioCodec": _audio_codec(stream.audio_header),
        "ViewersByProtocol": dict(viewers),
        "BitrateBps": bps,
        "BytesIn": stream.bytes_in,
        "BytesOut": stream.bytes_out,
        "UptimeS": max(0, int(now - source.started_at)),
    }
    relay_type = _relay_type(source.kind)
    if relay_type:
        info["RelayType"] = relay_type
    return info


async def describe_live_stream_info_by_page(
    ctx: ActionContext, body: dict[str, Any]
) -> DescribeLiveStreamInfoByPageResult:
    req = bind(DESCRIBE_LIVE_STREAM_INFO, body)
    page, size = req.get("PageNum", 1), req.get("PageSize", 10)
    fuzzy = req.get("QueryType") == "fuzzy"
    vhost = _filter_vhost(ctx, req.get("Vhost"), req.get("Domain"))
    wanted_source = req.get("SourceType")
    rows: list[tuple[LiveStream, SourceView]] = []
    if req.get("StreamType", "origin") == "origin":
        for stream in _hub(ctx).streams():
            source = stream.source
            if source is None or not source.active:
                continue
            key = stream.key
            if vhost is not None and key.vhost != vhost:
                continue
            if wanted_source and source_type(source.kind) != wanted_source:
                continue
            if _matches(key.app, req.get("App"), fuzzy) and _matches(key.name, req.get("Stream"), fuzzy):
                rows.append((stream, source))
    rows.sort(key=lambda r: (r[0].key.vhost, r[0].key.app, r[0].key.name))
    start = (page - 1) * size
    return {
        "RoughCount": len(rows),
        "StreamInfoList": [
            _live_info(ctx, stream, source, start + i + 1)
            for i, (stream, source) in enumerate(_page(rows, page, size))
        ],
    }


def _closed_info(ctx: ActionContext, item: ClosedStream) -> ClosedStreamInfo:
    info: ClosedStreamInfo = {
        "Vhost": item.key.vhost,
        "Domain": _domain_of(ctx, item.key.vhost),
        "App": item.key.app,
        "Stream": item.key.name,
        "StartTime": rfc3339_ms(item.start),
        "EndTime": rfc3339_ms(item.end),
        "SourceType": source_type(item.kind),
        "Source": redact_text(item.owner),
        "Reason": item.reason,
    }
    relay_type = _relay_type(item.kind)
    if relay_type:
        info["RelayType"] = relay_type
    return info


async def describe_closed_stream_info_by_page(
    ctx: ActionContext, body: dict[str, Any]
) -> DescribeClosedStreamInfoByPageResult:
    req = bind(DESCRIBE_CLOSED_STREAM_INFO, body)
    page, size = req.get("PageNum", 1), req.get("PageSize", 10)
    fuzzy = req.get("QueryType") == "fuzzy"
    vhost = _filter_vhost(ctx, req.get("Vhost"), req.get("Domain"))
    since = parse_rfc3339(req["EndTimeFrom"]) if "EndTimeFrom" in req else None
    until = parse_rfc3339(req["EndTimeTo"]) if "EndTimeTo" in req else None
    items = [
        item
        for item in _control(ctx).closed()
        if (vhost is None or item.key.vhost == vhost)
        and (not req.get("SourceType") or source_type(item.kind) == req.get("SourceType"))
        and _matches(item.key.app, req.get("App"), fuzzy)
        and _matches(item.key.name, req.get("Stream"), fuzzy)
        and (since is None or item.end >= since)
        and (until is None or item.end <= until)
    ]
    items.sort(key=lambda item: item.end, reverse=req.get("Sort", "desc") == "desc")
    return {
        "RoughCount": len(items),
        "StreamInfoList": [_closed_info(ctx, item) for item in _page(items, page, size)],
    }


def _push_or_pull(kind: SourceKind) -> Literal["push", "pull"]:
    return "push" if kind is SourceKind.PUBLISHER else "pull"


async def describe_forbidden_stream_info_by_page(
    ctx: ActionContext, body: dict[str, Any]
) -> DescribeForbiddenStreamInfoByPageResult:
    req = bind(DESCRIBE_FORBIDDEN_STREAM_INFO, body)
    page, size = req.get("PageNum", 1), req.get("PageSize", 10)
    fuzzy = req.get("QueryType") == "fuzzy"
    vhost = _filter_vhost(ctx, req.get("Vhost"), req.get("Domain"))
    items = [
        (key, entry)
        for key, entry in _control(ctx).forbidden().items()
        if (vhost is None or key.vhost == vhost)
        and _matches(key.app, req.get("App"), fuzzy)
        and _matches(key.name, req.get("Stream"), fuzzy)
    ]
    items.sort(key=lambda item: item[1].since, reverse=req.get("Sort", "desc") == "desc")
    return {
        "RoughCount": len(items),
        "StreamInfoList": [
            {
                "Vhost": key.vhost,
                "Domain": _domain_of(ctx, key.vhost),
                "App": key.app,
                "Stream": key.name,
                "CreateTime": rfc3339_ms(entry.since),
                "EndTime": rfc3339_ms(entry.until),
                "type": "push",
            }
            for key, entry in _page(items, page, size)
        ],
    }


async def describe_live_stream_state(
    ctx: ActionContext, body: dict[str, Any]
) -> DescribeLiveStreamStateResult:
    req = bind(STREAM_ADDRESS, body)
    key = StreamKey(_vhost_of(ctx, req), req["App"], req["Stream"])
    control = _control(ctx)
    if control.is_forbidden(key):
        return {"stream_state": "forbidden", "type": "push"}
    for stream in _hub(ctx).streams():
        source = stream.source
        if stream.key == key and source is not None and source.active:
            return {"stream_state": "online", "type": _push_or_pull(source.kind)}
    for item in reversed(control.closed()):
        if item.key == key:
            return {"stream_state": "offline", "type": _push_or_pull(item.kind)}
    return {"stream_state": "offline", "type": ""}


async def kill_stream(ctx: ActionContext, body: dict[str, Any]) -> Result:
    req = bind(STREAM_ADDRESS, body)
    key = StreamKey(_vhost_of(ctx, req), req["App"], req["Stream"])
    if not _control(ctx).kill(key):
        raise invalid_param(f"stream {req['App']}/{req['Stream']} is not online")
    return None


async def forbid_stream(ctx: ActionContext, body: dict[str, Any]) -> Result:
    req = bind(FORBID_STREAM, body)
    key = StreamKey(_vhost_of(ctx, req), req["App"], req["Stream"])
    now = time.time()
    until = parse_rfc3339(req["EndTime"]) if "EndTime" in req else now + MAX_FORBID_S
    if until <= now:
        raise invalid_param("EndTime must be in the future")
    if until > now + MAX_FORBID_S + 60:
        raise ApiError(400, "InvalidParam.OutOfRange", "EndTime must be at most 90 days from now")
    if not _control(ctx).forbid(key, until):
        raise ApiError(
            400, "InvalidParam.OutOfRange", f"at most {_control(ctx).max_forbidden} streams can be forbidden"
        )
    return None


async def resume_stream(ctx: ActionContext, body: dict[str, Any]) -> Result:
    req = bind(STREAM_ADDRESS, body)
    key = StreamKey(_vhost_of(ctx, req), req["App"], req["Stream"])
    _control(ctx).resume(key)  # not forbidden: success (idempotent)
    return None


async def describe_node_status(ctx: ActionContext, body: dict[str, Any]) -> DescribeNodeStatusResult:
    bind(DESCRIBE_NODE_STATUS, body)
    control = _control(ctx)
    hub = _hub(ctx)
    now = time.time()
    by_source: Counter[str] = Counter()
    for stream in hub.streams():
        source = stream.source
        if source is not None and source.active:
            by_source[source_type(source.kind)] += 1
    relays: Counter[str] = Counter()
    reporter: RelayReporter | None = ctx.relays
    if reporter is not None:
        relays.update(str(row.state.value) for row in reporter.status().rows)
    listeners: Mapping[str, str] = dict(control.listeners)
    return {
        "Version": __version__,
        "StartedAt": rfc3339_ms(control.started_at),
        "UptimeS": max(0, int(now - control.started_at)),
        "StreamsLive": sum(by_source.values()),
        "StreamsBySourceType": dict(by_source),
        "ViewersByProtocol": {k: v for k, v in hub.viewers_by_protocol().items() if v},
        "BytesIn": hub.bytes_in_total,
        "BytesOut": hub.bytes_out_total,
        "RelaysByState": dict(relays),
        "Listeners": listeners,
        "DefaultVhost": ctx.settings.media.default_vhost,
        "Time": rfc3339_ms(now),
    }
