"""`liverelay domain`: domains and vhosts through the API."""

from __future__ import annotations

from typing import Any

import click

from .app import cli
from .client import ApiContext, api_command
from .output import fail, out, print_json, table


@cli.group()
def domain() -> None:
    """Domains and vhosts (CreateDomainV2, ListDomainDetail, DeleteDomain)."""


@domain.command("add")
@click.option("--vhost", required=True, help="Domain space the domains belong to.")
@click.option("--push", "push_domains", multiple=True, metavar="DOMAIN", help="Push domain (repeatable).")
@click.option("--pull", "pull_domains", multiple=True, metavar="DOMAIN", help="Pull domain (repeatable).")
@click.option(
    "--region", default="cn", show_default=True, help="Region of the domains (cn, cn-oversea, cn-global)."
)
@api_command
def domain_add(
    api: ApiContext, vhost: str, push_domains: tuple[str, ...], pull_domains: tuple[str, ...], region: str
) -> None:
    """Add push/pull domains to a vhost (one CreateDomainV2 call)."""
    domains = [{"DomainName": d, "Type": "push", "Region": region} for d in push_domains]
    domains += [{"DomainName": d, "Type": "pull-flv", "Region": region} for d in pull_domains]
    if not domains:
        fail("give at least one --push or --pull domain", 2)
    response = api.call("create_domain_v2", {"Vhost": vhost, "Domains": domains})
    added = [f"added {d['Type']:<8} {d['DomainName']} -> vhost {vhost}" for d in domains]
    api.report(response, "\n".join(added))


@domain.command("list")
@click.option("--vhost", "vhosts", multiple=True, help="Only these vhosts (repeatable).")
@click.option("--page", default=1, show_default=True, type=click.IntRange(1, 1000))
@click.option("--size", default=100, show_default=True, type=click.IntRange(1, 1000))
@api_command
def domain_list(api: ApiContext, vhosts: tuple[str, ...], page: int, size: int) -> None:
    """List domains (ListDomainDetail)."""
    body: dict[str, Any] = {"PageNum": page, "PageSize": size}
    if vhosts:
        body["VhostList"] = list(vhosts)
    response = api.call("list_domain_detail", body)
    if api.as_json:
        print_json(response)
        return
    result = response.get("Result") or {}
    rows = [
        (
            d.get("Domain"),
            d.get("Type"),
            d.get("Vhost"),
            d.get("Region"),
            d.get("Status"),
            d.get("CreateTime"),
        )
        for d in result.get("DomainList") or []
    ]
    total = result.get("Total", len(rows))
    out.print(table(f"domains ({total})", ["Domain", "Type", "Vhost", "Region", "Status", "Created"], rows))


@domain.command("rm")
@click.argument("domain_name", metavar="DOMAIN")
@api_command
def domain_rm(api: ApiContext, domain_name: str) -> None:
    """Delete a domain (DeleteDomain)."""
    api.report(api.call("delete_domain", {"Domain": domain_name}), f"deleted {domain_name}")
