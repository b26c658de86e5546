"""The response envelope of every action (spec A.4), generic in the action's Result."""

from typing import Generic, NotRequired, Required, TypeVar

from typing_extensions import TypedDict

R = TypeVar("R")


class ErrorObject(TypedDict):
    Code: str
    Message: str
    CodeN: NotRequired[int]  # gateway errors only


class ResponseMetadata(TypedDict, total=False):
    RequestId: Required[str]
    Action: Required[str]
    Version: Required[str]
    Service: Required[str]
    Region: Required[str]
    Error: ErrorObject  # errors only


class Response(TypedDict, Generic[R], total=False):
    """What a successful call returns: `Result` is absent for actions without one
    (updates, deletes, domain creation)."""

    ResponseMetadata: Required[ResponseMetadata]
    Result: R


class NoResult(TypedDict):
    """The Result of actions that answer none (the key is absent)."""
