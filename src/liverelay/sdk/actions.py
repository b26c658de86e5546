"""The one table of actions: each client method, its Action and its typed shapes.

Both clients inherit `ActionMethods`, so each action is written once for the sync
and the async client. An attribute here is a descriptor: on a LiveService it is a
method returning the parsed response, on an AsyncLiveService a coroutine method, and
type checkers see each method's request and response TypedDicts (liverelay.schemas).
A plain dict works as the body at run time (the official examples run unchanged).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, overload

from ..schemas.domains import (
    CreateDomainRequest,
    CreateDomainV2Request,
    DeleteDomainRequest,
    DescribeDomainRequest,
    DescribeDomainResult,
    DisableDomainRequest,
    EnableDomainRequest,
    ListDomainDetailRequest,
    ListDomainDetailResult,
    UpdateDomainVhostRequest,
)
from ..schemas.envelope import NoResult, Response
from ..schemas.node_drain import DrainNodeRequest, DrainNodeResult
from ..schemas.relay_sources import (
    CreateRelaySourceV4Request,
    CreateRelaySourceV4Result,
    DeleteRelaySourceV3Request,
    DeleteRelaySourceV4Request,
    DescribeRelayEventsRequest,
    DescribeRelayEventsResult,
    DescribeRelaySourceV3Request,
    DescribeRelaySourceV3Result,
    DescribeRelayStatusRequest,
    DescribeRelayStatusResult,
    ListRelaySourceV4Request,
    ListRelaySourceV4Result,
    UpdateRelaySourceV3Request,
    UpdateRelaySourceV4Request,
)
from ..schemas.status import DescribeClusterNodesRequest, DescribeClusterNodesResult
from ..schemas.streams import (
    DescribeClosedStreamInfoByPageRequest,
    DescribeClosedStreamInfoByPageResult,
    DescribeForbiddenStreamInfoByPageRequest,
    DescribeForbiddenStreamInfoByPageResult,
    DescribeLiveStreamInfoByPageRequest,
    DescribeLiveStreamInfoByPageResult,
    DescribeLiveStreamStateRequest,
    DescribeLiveStreamStateResult,
    DescribeNodeStatusRequest,
    DescribeNodeStatusResult,
    ForbidStreamRequest,
    KillStreamRequest,
    ResumeStreamRequest,
)
from ..schemas.urlauth import (
    DescribeAuthRequest,
    DescribeAuthResult,
    GeneratePlayURLRequest,
    GeneratePlayURLResult,
    GeneratePushURLRequest,
    GeneratePushURLResult,
    UpdateAuthKeyRequest,
)

if TYPE_CHECKING:
    from .aio import AsyncLiveService
    from .client import LiveService

Req = TypeVar("Req", contravariant=True)
Res = TypeVar("Res")  # invariant: a generic TypedDict (Response) is
Q = TypeVar("Q")
S = TypeVar("S")


class SyncMethod(Protocol[Req, Res]):
    def __call__(self, body: Req | None = None, /) -> Response[Res]: ...


class AsyncMethod(Protocol[Req, Res]):
    def __call__(self, body: Req | None = None, /) -> Awaitable[Response[Res]]: ...


class Action(Generic[Q, S]):
    """`name = Action[Request, Result]("WireAction")` in ActionMethods: a client method."""

    def __init__(self, action: str) -> None:
        self.action = action
        self.method = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.method = name

    @overload
    def __get__(self, obj: None, owner: type) -> Action[Q, S]: ...
    @overload
    def __get__(self, obj: LiveService, owner: type) -> SyncMethod[Q, S]: ...
    @overload
    def __get__(self, obj: AsyncLiveService, owner: type) -> AsyncMethod[Q, S]: ...
    def __get__(self, obj: ActionMethods | None, owner: type) -> object:
        if obj is None:
            return self
        method = partial(_call_with_body, obj.call, self.action)
        method.__doc__ = f"{self.action}: POST /?Action={self.action} with `body` (a dict)."
        return method


def _call_with_body(
    call: Callable[[str, Mapping[str, Any] | None], object], action: str, body: object = None
) -> object:
    """`call(action, body)`; None = an empty body (e.g. DescribeRelayStatus without filters)."""
    if body is not None and not isinstance(body, Mapping):
        raise TypeError(f"{action}: the body must be a dict, not {type(body).__name__}")
    return call(action, body)


class ActionMethods:
    """Every action the SDK offers, with the official SDK's method names (live
    v20230101 LiveService) plus our DescribeRelayStatus."""

    def call(self, action: str, body: Mapping[str, Any] | None = None) -> object:
        raise NotImplementedError  # each client sends in its own way

    # -- play-triggered relay (V3) -------------------------------------------------
    update_relay_source_v3 = Action[UpdateRelaySourceV3Request, NoResult]("UpdateRelaySourceV3")
    describe_relay_source_v3 = Action[DescribeRelaySourceV3Request, DescribeRelaySourceV3Result](
        "DescribeRelaySourceV3"
    )
    delete_relay_source_v3 = Action[DeleteRelaySourceV3Request, NoResult]("DeleteRelaySourceV3")
    # -- fixed relay (V4) ----------------------------------------------------------
    create_relay_source_v4 = Action[CreateRelaySourceV4Request, CreateRelaySourceV4Result](
        "CreateRelaySourceV4"
    )
    update_relay_source_v4 = Action[UpdateRelaySourceV4Request, NoResult]("UpdateRelaySourceV4")
    delete_relay_source_v4 = Action[DeleteRelaySourceV4Request, NoResult]("DeleteRelaySourceV4")
    list_relay_source_v4 = Action[ListRelaySourceV4Request, ListRelaySourceV4Result]("ListRelaySourceV4")
    # -- domains -------------------------------------------------------------------
    create_domain_v2 = Action[CreateDomainV2Request, NoResult]("CreateDomainV2")
    create_domain = Action[CreateDomainRequest, NoResult]("CreateDomain")
    delete_domain = Action[DeleteDomainRequest, NoResult]("DeleteDomain")
    describe_domain = Action[DescribeDomainRequest, DescribeDomainResult]("DescribeDomain")
    list_domain_detail = Action[ListDomainDetailRequest, ListDomainDetailResult]("ListDomainDetail")
    update_domain_vhost = Action[UpdateDomainVhostRequest, NoResult]("UpdateDomainVhost")
    enable_domain = Action[EnableDomainRequest, NoResult]("EnableDomain")
    disable_domain = Action[DisableDomainRequest, NoResult]("DisableDomain")
    # -- streams (the Describe* ones are GET actions: parameters in the query string) ----
    describe_live_stream_info_by_page = Action[
        DescribeLiveStreamInfoByPageRequest, DescribeLiveStreamInfoByPageResult
    ]("DescribeLiveStreamInfoByPage")
    describe_live_stream_state = Action[DescribeLiveStreamStateRequest, DescribeLiveStreamStateResult](
        "DescribeLiveStreamState"
    )
    describe_closed_stream_info_by_page = Action[
        DescribeClosedStreamInfoByPageRequest, DescribeClosedStreamInfoByPageResult
    ]("DescribeClosedStreamInfoByPage")
    describe_forbidden_stream_info_by_page = Action[
        DescribeForbiddenStreamInfoByPageRequest, DescribeForbiddenStreamInfoByPageResult
    ]("DescribeForbiddenStreamInfoByPage")
    kill_stream = Action[KillStreamRequest, NoResult]("KillStream")
    forbid_stream = Action[ForbidStreamRequest, NoResult]("ForbidStream")
    resume_stream = Action[ResumeStreamRequest, NoResult]("ResumeStream")
    # -- URL authentication ----------------------------------------------------------
    update_auth_key = Action[UpdateAuthKeyRequest, NoResult]("UpdateAuthKey")
    describe_auth = Action[DescribeAuthRequest, DescribeAuthResult]("DescribeAuth")
    generate_push_url = Action[GeneratePushURLRequest, GeneratePushURLResult]("GeneratePushURL")
    generate_play_url = Action[GeneratePlayURLRequest, GeneratePlayURLResult]("GeneratePlayURL")
    # -- liverelay extension ---------------------------------------------------------
    describe_relay_status = Action[DescribeRelayStatusRequest, DescribeRelayStatusResult](
        "DescribeRelayStatus"
    )
    describe_relay_events = Action[DescribeRelayEventsRequest, DescribeRelayEventsResult](
        "DescribeRelayEvents"
    )
    describe_node_status = Action[DescribeNodeStatusRequest, DescribeNodeStatusResult]("DescribeNodeStatus")
    drain_node = Action[DrainNodeRequest, DrainNodeResult]("DrainNode")
    describe_cluster_nodes = Action[DescribeClusterNodesRequest, DescribeClusterNodesResult](
        "DescribeClusterNodes"
    )


# Method name -> Action, derived from the table above.
ACTIONS: dict[str, str] = {
    name: value.action for name, value in vars(ActionMethods).items() if isinstance(value, Action)
}
