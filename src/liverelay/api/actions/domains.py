"""Domain-space actions (spec D): the domain table that maps request hosts to vhosts."""

from __future__ import annotations

from typing import Any

from ...store import AlreadyExists, DomainRecord, NotFound, normalise_host
from ...store.domains import STATUS_DISABLED, STATUS_NORMAL
from ...timefmt import utc_iso
from ..context import ActionContext, Result
from ..errors import ApiError, invalid_param, out_of_range, request_forbidden
from ..validation import (
    VHOST_RE,
    as_object,
    get_int,
    get_int_list,
    get_list,
    get_str,
    get_str_list,
    is_valid_hostname,
)

DOMAIN_TYPES = ("push", "pull-flv")
REGIONS = ("cn", "cn-oversea", "cn-global", "oversea", "global")
MAX_DOMAINS_PER_VHOST = 10
VHOST_RULE = "letters, digits, '_', '-', '.'; 1-60 characters"


def _domain_name(body: dict[str, Any], name: str) -> str:
    value = get_str(body, name, required=True)
    assert value is not None
    if len(value) > 60 or not is_valid_hostname(value) or ":" in value:
        raise invalid_param(f"{name} {value[:120]!r} is not a domain name of 1-60 characters")
    return normalise_host(value)


def _one_of(body: dict[str, Any], name: str, allowed: tuple[str, ...], *, required: bool) -> str | None:
    value = get_str(body, name, required=required)
    if value is None or (value == "" and not required):
        return None
    if value not in allowed:
        raise ApiError(400, "InvalidParam.OutOfRange", f"{name} should be one of {{[{' '.join(allowed)}]}}")
    return value


def domain_view(record: DomainRecord, push_domain: str) -> dict[str, Any]:
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


async def _add(ctx: ActionContext, vhost: str, entries: list[tuple[str, str, str]]) -> None:
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
    vhost = get_str(body, "Vhost", required=True, pattern=VHOST_RE, rule=VHOST_RULE)
    items = get_list(body, "Domains", required=True)
    assert vhost is not None and items is not None
    if not items:
        raise invalid_param("Domains is required")
    if len(items) > MAX_DOMAINS_PER_VHOST:
        raise invalid_param(f"Domains holds at most {MAX_DOMAINS_PER_VHOST} entries")
    entries = []
    for index, raw in enumerate(items):
        item = as_object(raw, f"Domains[{index}]")
        name = _domain_name(item, "DomainName")
        dtype = _one_of(item, "Type", DOMAIN_TYPES, required=True)
        region = _one_of(item, "Region", REGIONS, required=True)
        assert dtype is not None and region is not None
        entries.append((name, dtype, region))
    await _add(ctx, vhost, entries)
    return None


async def create_domain(ctx: ActionContext, body: dict[str, Any]) -> Result:
    name = _domain_name(body, "Domain")
    dtype = _one_of(body, "Type", DOMAIN_TYPES, required=True)
    region = _one_of(body, "Region", REGIONS, required=False) or "cn"
    # Extension: Vhost may be given; otherwise the domain is its own vhost.
    vhost = get_str(body, "Vhost", pattern=VHOST_RE, rule=VHOST_RULE) or name
    assert dtype is not None
    await _add(ctx, vhost, [(name, dtype, region)])
    return None


async def delete_domain(ctx: ActionContext, body: dict[str, Any]) -> Result:
    name = get_str(body, "Domain", required=True)
    assert name is not None
    await ctx.store.delete_domain(name)  # deleting an absent domain succeeds (idempotent)
    return None


async def describe_domain(ctx: ActionContext, body: dict[str, Any]) -> Result:
    wanted = get_str_list(body, "DomainList", required=True)
    assert wanted is not None
    if not wanted:
        raise invalid_param("DomainList is required")
    if len(wanted) > 1000:
        raise out_of_range("DomainList length", 1, 1000)
    records = await ctx.store.list_domains()
    push = _push_domains(records)
    by_name = {r.domain: r for r in records}
    found = [by_name[n] for n in dict.fromkeys(normalise_host(w) for w in wanted) if n in by_name]
    return {"DomainList": [domain_view(r, push.get(r.vhost, "")) for r in found]}


async def list_domain_detail(ctx: ActionContext, body: dict[str, Any]) -> Result:
    page = get_int(body, "PageNum", default=1, low=1, high=1000, required=True)
    size = get_int(body, "PageSize", default=20, low=1, high=1000, required=True)
    names = get_str_list(body, "DomainNameList")
    regions = get_str_list(body, "DomainRegionList")
    statuses = get_int_list(body, "DomainStatusList")
    types = get_str_list(body, "DomainTypeList")
    vhosts = get_str_list(body, "VhostList")
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
    views = []
    for r in page_items:
        view = domain_view(r, push.get(r.vhost, ""))
        view.update({"ProjectName": "default", "Tags": []})
        views.append(view)
    return {"Total": len(matching), "DomainList": views}


def _known_domain(ctx: ActionContext, body: dict[str, Any]) -> str:
    name = get_str(body, "Domain", required=True)
    assert name is not None
    if ctx.store.domain_table.get(name) is None:
        raise request_forbidden(f"Domain {name[:120]!r} does not exist")
    return name


async def update_domain_vhost(ctx: ActionContext, body: dict[str, Any]) -> Result:
    name = _known_domain(ctx, body)
    vhost = get_str(body, "Vhost", required=True, pattern=VHOST_RE, rule=VHOST_RULE)
    assert vhost is not None
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
    name = _known_domain(ctx, body)
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
