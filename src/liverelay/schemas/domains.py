"""Requests and results of the domain actions (spec D). Wire names are the keys; see
relay_sources.py for how these TypedDicts serve both the API and the SDK."""

from typing import Annotated, Literal, Required

from pydantic import Field, SkipValidation
from typing_extensions import TypedDict

from .fields import ABSENT_AS_MISSING, DomainName, VhostName, bounded, max_items, request_adapter

MAX_DOMAINS_PER_VHOST = 10
MAX_DESCRIBE = 1000
MAX_DOMAIN_PAGE = 1000

DomainType = Literal["push", "pull-flv"]
Region = Literal["cn", "cn-oversea", "cn-global", "oversea", "global"]


class DomainTag(TypedDict):
    Key: str
    Value: str


class DomainSpec(TypedDict, total=False):
    DomainName: Required[DomainName]
    Type: Required[DomainType]
    Region: Required[Region]
    ChainID: SkipValidation[str]  # accepted, not used


class CreateDomainV2Request(TypedDict, total=False):
    Vhost: Required[VhostName]
    Domains: Required[
        Annotated[
            list[Annotated[DomainSpec, ABSENT_AS_MISSING]],
            Field(min_length=1),
            max_items(MAX_DOMAINS_PER_VHOST),
        ]
    ]
    # Accepted for compatibility and ignored, whatever their shape.
    ProjectName: SkipValidation[str]
    Tags: SkipValidation[list[DomainTag]]


class CreateDomainRequest(TypedDict, total=False):
    Domain: Required[DomainName]
    Type: Required[DomainType]
    Region: Region  # default cn
    Vhost: VhostName  # extension; default: the domain's own name


class DomainRequest(TypedDict, total=False):
    """DeleteDomain, EnableDomain, DisableDomain."""

    Domain: Required[str]


DeleteDomainRequest = DomainRequest
EnableDomainRequest = DomainRequest
DisableDomainRequest = DomainRequest


class UpdateDomainVhostRequest(TypedDict, total=False):
    Domain: Required[str]
    Vhost: Required[VhostName]


class DescribeDomainRequest(TypedDict, total=False):
    DomainList: Required[Annotated[list[str], Field(min_length=1), max_items(MAX_DESCRIBE, "out_of_range")]]


class ListDomainDetailRequest(TypedDict, total=False):
    PageNum: Required[Annotated[int, bounded(1, MAX_DOMAIN_PAGE)]]
    PageSize: Required[Annotated[int, bounded(1, MAX_DOMAIN_PAGE)]]
    DomainNameList: list[str]
    DomainRegionList: list[str]
    DomainStatusList: list[int]
    DomainTypeList: list[str]
    VhostList: list[str]


class DomainView(TypedDict):
    Domain: str
    Type: str
    Vhost: str
    PushDomain: str  # the vhost's first push domain by name, "" if none
    Region: str
    Status: int  # 0 normal, 2 disabled
    CNAME: str
    CnameCheck: int
    DomainCheck: int
    ICPCheck: int
    CertDomain: str
    ChainID: str
    HTTP2: bool
    CreateTime: str  # RFC 3339, UTC


class DomainDetailView(DomainView):
    ProjectName: str
    Tags: list[DomainTag]


class DescribeDomainResult(TypedDict):
    DomainList: list[DomainView]


class ListDomainDetailResult(TypedDict):
    Total: int
    DomainList: list[DomainDetailView]


CREATE_DOMAIN_V2 = request_adapter(CreateDomainV2Request)
CREATE_DOMAIN = request_adapter(CreateDomainRequest)
DOMAIN = request_adapter(DomainRequest)
UPDATE_DOMAIN_VHOST = request_adapter(UpdateDomainVhostRequest)
DESCRIBE_DOMAIN = request_adapter(DescribeDomainRequest)
LIST_DOMAIN_DETAIL = request_adapter(ListDomainDetailRequest)
