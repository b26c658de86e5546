"""Request bodies -> typed values: the one place pydantic's errors become API errors.

Wrong JSON type -> InvalidParam.BindError (what a typed binder reports); a missing
required field or a value that breaks a rule -> InvalidParam; a number or choice
outside its range -> InvalidParam.OutOfRange. The message names the field by its
location in the body (`GroupDetails[0].Servers[1].RelaySourceDomain`). The rules
themselves live with the shapes, in liverelay.schemas.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from .errors import ApiError, bind_error, invalid_param

T = TypeVar("T")

# pydantic's type errors, by the JSON type that was expected.
_EXPECTED: dict[str, str] = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "a boolean",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
}
_LOC_PART = 64  # a location may hold a user's object key: never echo a long one


def where(loc: tuple[int | str, ...]) -> str:
    """('GroupDetails', 0, 'Group') -> 'GroupDetails[0].Group'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)[:_LOC_PART]
    return text


def _join(loc: str, detail: str) -> str:
    return f"{loc} {detail}" if loc else detail


def api_error(error: ErrorDetails) -> ApiError:
    """One pydantic error -> the API error it stands for (status, Code, message naming the field)."""
    kind = error["type"]
    loc = where(error["loc"])
    ctx = error.get("ctx") or {}
    detail = str(ctx.get("detail", ""))
    if kind == "bind":
        return bind_error(_join(loc, detail))
    if kind in _EXPECTED:
        return bind_error(_join(loc, f"must be {_EXPECTED[kind]}"))
    if kind == "missing":
        return invalid_param(f"{loc} is required")
    if kind == "too_short" and ctx.get("min_length") == 1:
        return invalid_param(f"{loc} is required")  # an empty list is as good as none
    if kind == "out_of_range":
        return ApiError(400, "InvalidParam.OutOfRange", _join(loc, detail))
    if kind == "literal_error":
        return ApiError(400, "InvalidParam.OutOfRange", f"{loc} should be one of {ctx.get('expected', '')}")
    if kind == "invalid":
        return invalid_param(_join(loc, detail))
    # Any other rule pydantic checks for us (lengths, patterns): its own short message.
    return invalid_param(_join(loc, error["msg"]))


def bind(adapter: TypeAdapter[T], body: Mapping[str, Any]) -> T:
    """The body validated by `adapter` (strict: no type coercion), or the first error as an ApiError."""
    try:
        return adapter.validate_python(body, strict=True)
    except ValidationError as exc:
        raise api_error(exc.errors(include_url=False, include_input=False)[0]) from None


__all__ = ["api_error", "bind", "where"]
