"""Requests and results of the stream actions (Volcengine's stream management) and our
DescribeNodeStatus. Wire names (PascalCase) are the keys; our extra result fields sit
beside Volcengine's and are listed in docs/api.md.

Three of the actions are GET actions (DescribeLiveStreamInfoByPage,
DescribeLiveStreamState, DescribeClosedStreamInfoByPage): their parameters come in the
signed query string, where every value is text, so their integers accept decimal-digit
strings (`QueryInt`).
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Literal, NotRequired, Required, TypeVar

from pydantic import AfterValidator, BeforeValidator
from typing_extensions import TypedDict

from .fields import MAX_PAGE, AppName, StreamName, VhostName, bounded, echo, error, invalid, request_adapter

# Actions Volcengine documents as GET: parameters in the signed query string, no body.
GET_ACTIONS = frozenset(
    {
        "DescribeLiveStreamInfoByPage",
        "DescribeLiveStreamState",
        "DescribeClosedStreamInfoByPage",
        "DescribeForbiddenStreamInfoByPage",
    }
)
MAX_STREAM_PAGE_SIZE = 1000  # Volcengine: PageSize in [1, 1000]
MAX_FORBID_S = 90 * 24 * 3600  # Volcengine: a forbid lasts at most 90 days (also the default)


def _int_text(value: object) -> object:
    """A query-string integer arrives as text: decimal digits only."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 12:
            raise error("bind", "must be an integer")
        return int(text)
    return value


def parse_rfc3339(value: str) -> float:
    """'2021-04-14T00:00:01.000Z' (or with an offset) -> Unix seconds."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise invalid(f"{echo(value)} is not an RFC 3339 time") from None
    if when.tzinfo is None:
        raise invalid(f"{echo(value)} has no time zone (e.g. 2021-04-14T00:00:01.000Z)")
    return when.timestamp()


def _rfc3339_text(value: str) -> str:
    parse_rfc3339(value)
    return value


def rfc3339_ms(ts: float) -> str:
    """Unix seconds -> '2021-04-14T00:00:01.000Z' (Volcengine's form: UTC, milliseconds)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


QueryInt = Annotated[int, BeforeValidator(_int_text)]
PageNum = Annotated[QueryInt, bounded(1, MAX_PAGE)]
PageSize = Annotated[QueryInt, bounded(1, MAX_STREAM_PAGE_SIZE)]
Rfc3339 = Annotated[str, AfterValidator(_rfc3339_text)]
SourceTypeName = Literal["push", "relay"]
QueryTypeName = Literal["fuzzy", "strict"]


class StreamAddress(TypedDict, total=False):
    """One stream: by Vhost or by any Domain of it (exactly one of the two)."""

    Vhost: VhostName
    Domain: str
    App: Required[AppName]
    Stream: Required[StreamName]


class ForbidStreamRequest(StreamAddress, total=False):
    EndTime: Rfc3339  # default now + 90 days; at most 90 days ahead


KillStreamRequest = StreamAddress
ResumeStreamRequest = StreamAddress
DescribeLiveStreamStateRequest = StreamAddress


A = TypeVar("A", bound=StreamAddress)


def _one_of_vhost_domain(body: A) -> A:
    if bool(body.get("Vhost")) == bool(body.get("Domain")):
        raise invalid("give exactly one of Vhost and Domain")
    return body


class DescribeLiveStreamInfoByPageRequest(TypedDict, total=False):
    PageNum: PageNum  # default 1
    PageSize: PageSize  # default 10
    Vhost: VhostName
    Domain: str
    App: str  # strict: exact; fuzzy: a substring
    Stream: str
    StreamType: Literal["origin", "trans"]  # the node has no transcoding: trans lists nothing
    SourceType: SourceTypeName
    QueryType: QueryTypeName  # default strict


class DescribeClosedStreamInfoByPageRequest(TypedDict, total=False):
    PageNum: PageNum
    PageSize: PageSize
    Vhost: VhostName
    Domain: str
    App: str
    Stream: str
    Sort: Literal["asc", "desc"]  # by end time; default desc
    EndTimeFrom: Rfc3339
    EndTimeTo: Rfc3339
    SourceType: SourceTypeName
    QueryType: QueryTypeName


class DescribeForbiddenStreamInfoByPageRequest(TypedDict, total=False):
    PageNum: PageNum
    PageSize: PageSize
    Vhost: VhostName
    Domain: str
    App: str
    Stream: str
    Sort: Literal["asc", "desc"]  # by forbid time; default desc
    QueryType: QueryTypeName


class ForbiddenStreamInfo(TypedDict):
    Vhost: str
    Domain: str
    App: str
    Stream: str
    CreateTime: str  # when it was forbidden (RFC 3339 UTC)
    EndTime: str  # when the forbid expires
    type: str  # "push": only publishers are refused


class DescribeForbiddenStreamInfoByPageResult(TypedDict):
    RoughCount: int
    StreamInfoList: list[ForbiddenStreamInfo]


class LiveStreamInfo(TypedDict):
    # Volcengine's fields
    ID: int
    Vhost: str
    Domain: str
    App: str
    Stream: str
    SessionStartTime: str  # RFC 3339 UTC
    OnlineUser: int  # viewers
    BandWidth: int  # kbit/s sent to viewers (Bitrate x viewers)
    Bitrate: int  # kbit/s received
    PreviewURL: str  # HTTP-FLV play URL on this node
    # ours
    SourceType: str  # push | relay
    RelayType: NotRequired[str]  # play (V3) | fixed (V4), for SourceType relay
    Source: str  # the publisher's address or the relay's owner (redacted)
    VideoCodec: str  # avc | hevc | ... | "" (none yet)
    AudioCodec: str  # aac | codec<N> | ""
    ViewersByProtocol: dict[str, int]  # rtmp, http-flv, ...
    BitrateBps: int  # bits/s received (5 s average)
    BytesIn: int
    BytesOut: int
    UptimeS: int


class DescribeLiveStreamInfoByPageResult(TypedDict):
    RoughCount: int
    StreamInfoList: list[LiveStreamInfo]


class ClosedStreamInfo(TypedDict):
    Vhost: str
    Domain: str
    App: str
    Stream: str
    StartTime: str
    EndTime: str
    SourceType: str
    # ours
    RelayType: NotRequired[str]
    Source: str
    Reason: str  # ended | killed | forbidden


class DescribeClosedStreamInfoByPageResult(TypedDict):
    RoughCount: int
    StreamInfoList: list[ClosedStreamInfo]


class DescribeLiveStreamStateResult(TypedDict):
    stream_state: Literal["online", "offline", "forbidden"]
    type: Literal["push", "pull", ""]


class DescribeNodeStatusRequest(TypedDict, total=False):
    pass


class DescribeNodeStatusResult(TypedDict):
    Version: str
    StartedAt: str
    UptimeS: int
    StreamsLive: int
    StreamsBySourceType: dict[str, int]
    ViewersByProtocol: dict[str, int]
    BytesIn: int
    BytesOut: int
    RelaysByState: dict[str, int]
    Listeners: Mapping[str, str]  # api, http, rtmp -> URL (template for http/rtmp)
    DefaultVhost: str  # media.default_vhost ("" = strict: unknown domains refused)
    Time: str


STREAM_ADDRESS = request_adapter(StreamAddress, _one_of_vhost_domain)
FORBID_STREAM = request_adapter(ForbidStreamRequest, _one_of_vhost_domain)
DESCRIBE_LIVE_STREAM_INFO = request_adapter(DescribeLiveStreamInfoByPageRequest)
DESCRIBE_CLOSED_STREAM_INFO = request_adapter(DescribeClosedStreamInfoByPageRequest)
DESCRIBE_NODE_STATUS = request_adapter(DescribeNodeStatusRequest)
DESCRIBE_FORBIDDEN_STREAM_INFO = request_adapter(DescribeForbiddenStreamInfoByPageRequest)
