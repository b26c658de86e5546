"""Requests and results of the relay-source actions: V3 (play-triggered), V4 (fixed)
and our DescribeRelayStatus. Wire names (PascalCase) are the keys.

The TypedDicts are the one definition: the API validates bodies against them (through
the adapters below, with the rules in `fields`), the SDK types its methods with them, and
a plain dict literal is a valid value of each, so the official examples run unchanged.
"""

from collections.abc import Mapping
from typing import Annotated, Literal, NotRequired, Required

from pydantic import AfterValidator, Field
from typing_extensions import TypedDict

from .fields import (
    ABSENT_AS_MISSING,
    MAX_ADDRESSES,
    MAX_FIXED_SPAN_S,
    MAX_PAGE,
    AppName,
    GroupName,
    HostPort,
    OriginUrl,
    ParamMap,
    StreamName,
    UnixTime,
    V3Protocol,
    VhostName,
    bounded,
    invalid,
    max_items,
    request_adapter,
)

MAX_LIST_SIZE = 500

# ---- V3: play-triggered relay configs, keyed by (Vhost, App) -----------------------


class RelaySourceServer(TypedDict, total=False):
    RelaySourceProtocol: Required[V3Protocol]  # rtmp | flv, any case; stored lower-case
    RelaySourceDomain: Required[HostPort]  # host, host:port, [v6]:port; no scheme, no path
    RelaySourceParams: ParamMap  # query parameters added to the origin URL


class RelaySourceGroup(TypedDict, total=False):
    Group: Required[GroupName]
    Servers: Required[
        Annotated[
            list[Annotated[RelaySourceServer, ABSENT_AS_MISSING]],
            Field(min_length=1),
            max_items(MAX_ADDRESSES),
        ]
    ]


def _check_groups(groups: list[RelaySourceGroup]) -> list[RelaySourceGroup]:
    """Rules across groups: unique names, at most MAX_ADDRESSES servers in all."""
    names = [g["Group"] for g in groups]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise invalid(f"Group {name[:100]!r} appears twice")
    if sum(len(g["Servers"]) for g in groups) > MAX_ADDRESSES:
        raise invalid(f"holds at most {MAX_ADDRESSES} origin servers in total")
    return groups


class UpdateRelaySourceV3Request(TypedDict, total=False):
    Vhost: Required[VhostName]
    App: AppName  # absent or "" = the vhost-wide config
    GroupDetails: Required[
        Annotated[
            list[Annotated[RelaySourceGroup, ABSENT_AS_MISSING]],
            Field(min_length=1),
            AfterValidator(_check_groups),
        ]
    ]


class DescribeRelaySourceV3Request(TypedDict, total=False):
    Vhost: Required[VhostName]
    App: AppName  # absent or "" = every config of the vhost
    Group: str  # only this group


class DeleteRelaySourceV3Request(TypedDict, total=False):
    Vhost: Required[VhostName]
    App: AppName
    Group: str  # only this group (the config goes with its last group)


class RelaySourceConfig(TypedDict):
    Vhost: str
    App: str
    GroupDetails: list[RelaySourceGroup]


class DescribeRelaySourceV3Result(TypedDict):
    RelaySourceConfigList: list[RelaySourceConfig]


# ---- V4: fixed relays, keyed by (vhost, App, Stream); addressed by Domain or Vhost ---


class RelaySourceV4Key(TypedDict, total=False):
    Domain: str  # any domain of the vhost; or:
    Vhost: VhostName  # the vhost itself (JNEW; also the default vhost)
    App: Required[AppName]
    Stream: Required[StreamName]


class RelaySourceV4Request(RelaySourceV4Key, total=False):
    """CreateRelaySourceV4 and UpdateRelaySourceV4 (Update sets the whole record)."""

    SrcAddrS: Required[Annotated[list[OriginUrl], Field(min_length=1), max_items(MAX_ADDRESSES)]]
    StartTime: UnixTime  # both or neither; neither = permanent
    EndTime: UnixTime


def _check_schedule(body: RelaySourceV4Request) -> RelaySourceV4Request:
    start, end = body.get("StartTime"), body.get("EndTime")
    if (start is None) != (end is None):
        raise invalid("StartTime and EndTime must be given together (both absent = permanent relay)")
    if start is not None and end is not None:
        if end <= start:
            raise invalid("EndTime must be later than StartTime")
        if end - start > MAX_FIXED_SPAN_S:
            raise invalid("EndTime - StartTime must not exceed 7 days (604800 s)")
    return body


CreateRelaySourceV4Request = RelaySourceV4Request
UpdateRelaySourceV4Request = RelaySourceV4Request
DeleteRelaySourceV4Request = RelaySourceV4Key


class CreateRelaySourceV4Result(TypedDict):
    TaskId: str  # decimal digits


class ListRelaySourceV4Request(TypedDict, total=False):
    Domain: str
    Vhost: VhostName
    Page: Annotated[int, bounded(1, MAX_PAGE)]  # default 1
    Size: Annotated[int, bounded(1, MAX_LIST_SIZE)]  # default 20


class RelaySourceV4(TypedDict):
    Domain: str
    App: str
    Stream: str
    SrcAddrS: list[str]
    StartTime: NotRequired[int]  # absent for a permanent relay
    EndTime: NotRequired[int]
    Vhost: str
    TaskId: str


class Pagination(TypedDict):
    PageCur: int
    PageSize: int
    PageTotal: int
    TotalCount: int


class ListRelaySourceV4Result(TypedDict):
    List: list[RelaySourceV4]
    Pagination: Pagination


# ---- DescribeRelayStatus (our extension) -------------------------------------------


class DescribeRelayStatusRequest(TypedDict, total=False):
    Vhost: str  # exact-match filters
    App: str
    Stream: str
    Type: Literal["play", "fixed"]  # play = V3, fixed = V4


class DescribeRelayStatusResult(TypedDict):
    # The row's one definition is the status model (schemas/status.py); here it is
    # what reaches the wire: a JSON object per relay.
    RelayStatusList: list[Mapping[str, object]]


class DescribeRelayEventsRequest(DescribeRelayStatusRequest, total=False):
    Limit: Annotated[int, bounded(1, 1000)]  # default 100


class DescribeRelayEventsResult(TypedDict):
    # relay.events: the webhook bodies ({"Event", "Time", "Type", "Vhost", "App", "Stream", ...}).
    EventList: list[Mapping[str, object]]


# ---- validators of request bodies ----------------------------------------------------

UPDATE_RELAY_SOURCE_V3 = request_adapter(UpdateRelaySourceV3Request)
DESCRIBE_RELAY_SOURCE_V3 = request_adapter(DescribeRelaySourceV3Request)
DELETE_RELAY_SOURCE_V3 = request_adapter(DeleteRelaySourceV3Request)
RELAY_SOURCE_V4 = request_adapter(RelaySourceV4Request, _check_schedule)
RELAY_SOURCE_V4_KEY = request_adapter(RelaySourceV4Key)
LIST_RELAY_SOURCE_V4 = request_adapter(ListRelaySourceV4Request)
DESCRIBE_RELAY_STATUS = request_adapter(DescribeRelayStatusRequest)
DESCRIBE_RELAY_EVENTS = request_adapter(DescribeRelayEventsRequest)
