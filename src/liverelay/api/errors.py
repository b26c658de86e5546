"""API errors: each carries the HTTP status and the Volcengine error code it maps to."""

from __future__ import annotations

BIND_ERROR_MESSAGE = "Request parameter error, please check input data"


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, code_n: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.code_n = code_n

    def error_object(self) -> dict[str, object]:
        err: dict[str, object] = {"Code": self.code, "Message": self.message}
        if self.code_n is not None:
            err["CodeN"] = self.code_n
        return err


# Gateway errors (spec section E), with their CodeN.
def missing_parameter(name: str) -> ApiError:
    return ApiError(400, "MissingParameter", f"The request is missing {name} parameter.", 100002)


def missing_authentication_token() -> ApiError:
    return ApiError(401, "MissingAuthenticationToken", "Request is missing Authentication Token.", 100003)


def missing_request_info(what: str) -> ApiError:
    return ApiError(400, "MissingRequestInfo", f"The request is missing {what} information.", 100004)


def missing_signature() -> ApiError:
    return ApiError(401, "MissingSignature", "The request is missing signature.", 100005)


def invalid_timestamp() -> ApiError:
    return ApiError(400, "InvalidTimestamp", "The Signature of the request is expired.", 100006)


def service_not_found(service: str) -> ApiError:
    return ApiError(404, "ServiceNotFound", f"This service[{service}] not found.", 100007)


def invalid_action_or_version(action: str, version: str) -> ApiError:
    return ApiError(
        404, "InvalidActionOrVersion", f"Could not find operation {action} for version {version}.", 100008
    )


def invalid_access_key(ak: str) -> ApiError:
    message = f"The accesskey [{ak[:64]}] included in the request is invalid."
    return ApiError(401, "InvalidAccessKey", message, 100009)


def signature_does_not_match() -> ApiError:
    return ApiError(
        401,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. Check your Secret "
        "Access Key and signing method. Consult the service documentation for details.",
        100010,
    )


def internal_error() -> ApiError:
    return ApiError(500, "InternalError", "Service has some internal Error. Pls Contact With Admin.", 100014)


def service_unavailable() -> ApiError:
    """The database cannot be reached (PostgreSQL down): nothing was written; retry later."""
    return ApiError(503, "ServiceUnavailable", "The service is temporarily unavailable, please retry later.")


def invalid_authorization(detail: str) -> ApiError:
    message = f"Invalid 'Authorization' header, Pls check authorization header. ({detail})"
    return ApiError(400, "InvalidAuthorization", message)


def invalid_credential(detail: str) -> ApiError:
    return ApiError(
        400,
        "InvalidCredential",
        f"Invalid credential in 'Authorization', Pls check credential in authorization header. ({detail})",
    )


def method_not_allowed(method: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", f"Method {method} is not allowed; use POST.")


def flow_limit_exceeded() -> ApiError:
    message = "Request rate limit for this access key exceeded."
    return ApiError(429, "AccountFlowLimitExceeded", message, 100027)


def body_too_large(limit: int) -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", f"The request body is larger than {limit} bytes.")


# Action errors (spec C.8).
def invalid_param(message: str) -> ApiError:
    return ApiError(400, "InvalidParam", message)


def bind_error(detail: str = "") -> ApiError:
    return ApiError(400, "InvalidParam.BindError", BIND_ERROR_MESSAGE + (f": {detail}" if detail else ""))


def out_of_range(name: str, low: int, high: int | None) -> ApiError:
    if high is None:
        return ApiError(400, "InvalidParam.OutOfRange", f"{name} should be at least {low}")
    return ApiError(400, "InvalidParam.OutOfRange", f"{name} should be between {low} and {high}")


def request_forbidden(message: str) -> ApiError:
    return ApiError(403, "RequestForbidden", message)
