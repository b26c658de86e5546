"""Requests and results of the URL-authentication actions (UpdateAuthKey, DescribeAuth,
GeneratePushURL, GeneratePlayURL); wire names are the keys (see relay_sources.py for
how these TypedDicts serve both the API and the SDK)."""

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Literal, Required, TypeVar

from pydantic import AfterValidator, Field, SkipValidation
from typing_extensions import TypedDict

from .fields import (
    ABSENT_AS_MISSING,
    AppName,
    DomainName,
    StreamName,
    VhostName,
    bounded,
    echo,
    invalid,
    max_items,
    request_adapter,
)

MIN_VALID_DURATION = 60
MAX_VALID_DURATION = 2_592_000  # 30 days, the service's range for UpdateAuthKey
DEFAULT_VALID_DURATION = 604_800  # 7 days
MAX_AUTH_KEYS = 2  # the primary key and one backup key (a rotation)
MAX_URL_DURATION = 10 * 365 * 86400  # GeneratePush/PlayURL: ValidDuration > 0, capped at 10 years
SECRET_RE = re.compile(r"[A-Za-z0-9]{1,100}")

Scene = Literal["push", "pull"]
Algorithm = Literal["md5", "hmac_sha256"]


def _secret(value: str) -> str:
    if not SECRET_RE.fullmatch(value):
        raise invalid("must be 1-100 letters and digits")
    return value


B = TypeVar("B", bound=Mapping[str, object])


def _one_of_vhost_domain(body: B) -> B:
    if ("Vhost" in body) == ("Domain" in body):
        raise invalid("give exactly one of Vhost and Domain")
    return body


def _distinct_keys(body: "UpdateAuthKeyRequest") -> "UpdateAuthKeyRequest":
    keys = [d["SecretKey"] for d in body["AuthDetailList"]]
    if len(set(keys)) != len(keys):
        raise invalid("AuthDetailList holds the same SecretKey twice")
    return body


def _rfc3339(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise invalid(f"{echo(value)} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise invalid(f"{echo(value)} has no time zone (RFC 3339: Z or +hh:mm)")
    return value


SecretKey = Annotated[str, AfterValidator(_secret)]
Rfc3339 = Annotated[str, AfterValidator(_rfc3339)]


class AuthDetail(TypedDict, total=False):
    SecretKey: Required[SecretKey]
    EncryptionAlgorithm: Required[Algorithm]
    AuthField: SkipValidation[dict[str, str]]  # accepted, not used: the parameter names are fixed


class UpdateAuthKeyRequest(TypedDict, total=False):
    Vhost: VhostName
    Domain: str
    App: AppName  # absent: every app of the vhost
    SceneType: Required[Scene]
    AuthDetailList: Required[
        Annotated[
            list[Annotated[AuthDetail, ABSENT_AS_MISSING]], Field(min_length=1), max_items(MAX_AUTH_KEYS)
        ]
    ]
    ValidDuration: Annotated[int, bounded(MIN_VALID_DURATION, MAX_VALID_DURATION)]
    PushPullEnable: bool  # default false, as the service's


class DescribeAuthRequest(TypedDict, total=False):
    Vhost: VhostName
    Domain: str
    App: AppName
    SceneType: Scene  # absent: both


class AuthDetailView(TypedDict):
    SecretKey: str
    EncryptionAlgorithm: str


class AuthView(TypedDict):
    Vhost: str
    Domain: str  # the Domain asked for, "" when asked by Vhost
    App: str  # "" = every app
    SceneType: str
    AuthStatus: bool
    AuthDetailList: list[AuthDetailView]
    ValidDuration: int


class DescribeAuthResult(TypedDict):
    AuthList: list[AuthView]


class GeneratePushURLRequest(TypedDict, total=False):
    Vhost: Required[VhostName]
    Domain: DomainName  # absent: every push domain of the vhost
    App: Required[AppName]
    Stream: Required[StreamName]
    ValidDuration: Annotated[int, bounded(1, MAX_URL_DURATION)]
    ExpiredTime: Rfc3339  # wins over ValidDuration


class PushURLDetail(TypedDict):
    URL: str
    DomainApp: str  # rtmp://domain/app: the "server" field of an encoder such as OBS
    StreamSign: str  # stream?volcTime=...&volcSecret=...: the encoder's "stream key"


class GeneratePushURLResult(TypedDict):
    PushURLList: list[str]
    PushURLListDetail: list[PushURLDetail]
    AuthType: str  # "" unsigned, "TypeB" (md5), "TypeCustom" (hmac_sha256)
    ExpiredTime: str  # extension: when the URLs expire (RFC 3339, UTC)


class GeneratePlayURLRequest(TypedDict, total=False):
    Domain: DomainName  # a pull domain (written into the URLs); absent: Vhost's (extension)
    Vhost: VhostName  # extension: every pull domain of the vhost
    App: Required[AppName]
    Stream: Required[StreamName]
    Type: SkipValidation[str]  # fcdn / 3rd: accepted, not used
    Suffix: SkipValidation[str]  # transcoding suffix: this node has no transcoding
    StreamType: SkipValidation[str]
    ValidDuration: Annotated[int, bounded(1, MAX_URL_DURATION)]
    ExpiredTime: Rfc3339


class PlayURL(TypedDict):
    URL: str
    CDN: str
    Protocol: str  # rtmp | flv | hls
    Type: str  # pull


class GeneratePlayURLResult(TypedDict):
    URLList: list[PlayURL]
    AuthType: str
    ExpiredTime: str


UPDATE_AUTH_KEY = request_adapter(UpdateAuthKeyRequest, _one_of_vhost_domain, _distinct_keys)
DESCRIBE_AUTH = request_adapter(DescribeAuthRequest, _one_of_vhost_domain)
GENERATE_PUSH_URL = request_adapter(GeneratePushURLRequest)
GENERATE_PLAY_URL = request_adapter(GeneratePlayURLRequest)
