"""Domain-space actions (spec D): the domain table that maps request hosts to vhosts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...schemas.domains import (
    CREATE_DOMAIN,
    CREATE_DOMAIN_V2,
    DESCRIBE_DOMAIN,
    DOMAIN,
    LIST_DOMAIN_DETAIL,
    MAX_DOMAINS_PER_VHOST,
    UPDATE_DOMAIN_VHOST,
    DescribeDomainResult,
    DomainDetailView,
    DomainView,
    ListDomainDetailResult,
)
from ...store import AlreadyExists, DomainRecord, NotFound, normalise_host
from ...store.domains import STATUS_DISABLED, STATUS_NORMAL
from ...timefmt import utc_iso
from ..binding import bind
from ..context import ActionContext, Result
from ..errors import invalid_param, request_forbidden


def domain_view(record: DomainRecord, push_domain: str) -> DomainView:
    created = utc_iso(record.created)
    return {
        "Domain": record.domain,
        "Type": record.type,
        "Vhost": record.vhost,
        "PushDomain": push_domain,
        "Region": record.region,
        "Status": record.status,
        "CNAME": "",
        "CnameCheck": 0,
        "DomainCheck": 0,
        "ICPCheck": 1,
        "CertDomain": "",
        "ChainID": "",
        "HTTP2": False,
        "CreateTime": created,
    }


def _push_domains(records: list[DomainRecord]) -> dict[str, str]:
    """vhost -> its first push domain (by name), the PushDomain of its records."""
    result: dict[str, str] = {}
    for r in sorted(records, key=lambda r: r.domain):
        if r.type == "push":
            result.setdefault(r.vhost, r.domain)
    return result


async def _add(ctx: ActionContext, vhost: str, entries: Sequence[tuple[str, str, str]]) -> None:
    names = [d for d, _, _ in entries]
    if len(set(names)) != len(names):
        raise invalid_param("Domains contains the same DomainName twice")
    existing = len(ctx.store.domain_table.domains_of(vhost))
    if existing + len(entries) > MAX_DOMAINS_PER_VHOST:
        raise invalid_param(f"a Vhost holds at most {MAX_DOMAINS_PER_VHOST} domains ({vhost} has {existing})")
    try:
        await ctx.store.add_domains(vhost, entries)
    except AlreadyExists as exc:
        raise invalid_param(str(exc)) from None


async def create_domain_v2(ctx: ActionContext, body: dict[str, Any]) -> Result:
    req = bind(CREATE_DOMAIN_V2, body)
    entries = [(normalise_host(d["DomainName"]), d["Type"], d["Region"]) for d in req["Domains"]]
    await _add(ctx, req["Vhost"], entries)
    return None


async def create_domain(ctx: ActionContext, body: dict[str, Any]) -> Result:
    req = bind(CREATE_DOMAIN, body)
    name = normalise_host(req["Domain"])
    # Extension: Vhost may be given; otherwise the domain is its own vhost.
    await _add(ctx, req.get("Vhost", name), [(name, req["Type"], req.get("Region", "cn"))])
    return None


async def delete_domain(ctx: ActionContext, body: dict[str, Any]) -> Result:
    req = bind(DOMAIN, body)
    await ctx.store.delete_domain(req["Domain"])  # deleting an absent domain succeeds (idempotent)
    return None


async def describe_domain(ctx: ActionContext, body: dict[str, Any]) -> DescribeDomainResult:
    req = bind(DESCRIBE_DOMAIN, body)
    records = await ctx.store.list_domains()
    push = _push_domains(records)
    by_name = {r.domain: r for r in records}
    wanted = dict.fromkeys(normalise_host(w) for w in req["DomainList"])
    found = [by_name[n] for n in wanted if n in by_name]
    return {"DomainList": [domain_view(r, push.get(r.vhost, "")) for r in found]}


async def list_domain_detail(ctx: ActionContext, body: dict[str, Any]) -> ListDomainDetailResult:
    req = bind(LIST_DOMAIN_DETAIL, body)
    page, size = req["PageNum"], req["PageSize"]
    names = req.get("DomainNameList")
    regions = req.get("DomainRegionList")
    statuses = req.get("DomainStatusList")
    types = req.get("DomainTypeList")
    vhosts = req.get("VhostList")
    records = await ctx.store.list_domains()
    push = _push_domains(records)
    name_set = {normalise_host(n) for n in names} if names else None

    def keep(r: DomainRecord) -> bool:
        return (
            (name_set is None or r.domain in name_set)
            and (not regions or r.region in regions)
            and (not statuses or r.status in statuses)
            and (not types or r.type in types)
            and (not vhosts or r.vhost in vhosts)
        )

    matching = [r for r in records if keep(r)]
    page_items = matching[(page - 1) * size : page * size]
    views: list[DomainDetailView] = [
        {**domain_view(r, push.get(r.vhost, "")), "ProjectName": "default", "Tags": []} for r in page_items
    ]
    return {"Total": len(matching), "DomainList": views}


def _known_domain(ctx: ActionContext, name: str) -> str:
    if ctx.store.domain_table.get(name) is None:
        raise request_forbidden(f"Domain {name[:120]!r} does not exist")
    return name


async def update_domain_vhost(ctx: ActionContext, body: dict[str, Any]) -> Result:
    req = bind(UPDATE_DOMAIN_VHOST, body)
    name = _known_domain(ctx, req["Domain"])
    vhost = req["Vhost"]
    current = ctx.store.domain_table.get(name)
    moving = current is not None and current.vhost != vhost
    if moving and len(ctx.store.domain_table.domains_of(vhost)) >= MAX_DOMAINS_PER_VHOST:
        raise invalid_param(f"a Vhost holds at most {MAX_DOMAINS_PER_VHOST} domains")
    try:
        await ctx.store.update_domain(name, vhost=vhost)
    except NotFound:
        raise request_forbidden(f"Domain {name[:120]!r} does not exist") from None
    return None


async def _set_status(ctx: ActionContext, body: dict[str, Any], status: int) -> Result:
    name = _known_domain(ctx, bind(DOMAIN, body)["Domain"])
    try:
        await ctx.store.update_domain(name, status=status)
    except NotFound:
        raise request_forbidden(f"Domain {name[:120]!r} does not exist") from None
    return None


async def enable_domain(ctx: ActionContext, body: dict[str, Any]) -> Result:
    return await _set_status(ctx, body, STATUS_NORMAL)


async def disable_domain(ctx: ActionContext, body: dict[str, Any]) -> Result:
    """A disabled domain stays registered but the media servers no longer map it to its vhost."""
    return await _set_status(ctx, body, STATUS_DISABLED)
