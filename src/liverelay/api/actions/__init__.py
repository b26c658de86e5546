"""Action registry: Action name -> handler, for Version 2023-01-01."""

from __future__ import annotations

from ...schemas.streams import GET_ACTIONS
from ..context import ActionHandler
from . import cluster, cluster_nodes, domains, relay_v3, relay_v4, status, streams, urlauth

API_VERSION = "2023-01-01"

ACTIONS: dict[str, ActionHandler] = {
    "UpdateRelaySourceV3": relay_v3.update_relay_source_v3,
    "DescribeRelaySourceV3": relay_v3.describe_relay_source_v3,
    "DeleteRelaySourceV3": relay_v3.delete_relay_source_v3,
    "CreateRelaySourceV4": relay_v4.create_relay_source_v4,
    "UpdateRelaySourceV4": relay_v4.update_relay_source_v4,
    "DeleteRelaySourceV4": relay_v4.delete_relay_source_v4,
    "ListRelaySourceV4": relay_v4.list_relay_source_v4,
    "CreateDomainV2": domains.create_domain_v2,
    "CreateDomain": domains.create_domain,
    "DeleteDomain": domains.delete_domain,
    "DescribeDomain": domains.describe_domain,
    "ListDomainDetail": domains.list_domain_detail,
    "UpdateDomainVhost": domains.update_domain_vhost,
    "EnableDomain": domains.enable_domain,
    "DisableDomain": domains.disable_domain,
    "DescribeRelayStatus": status.describe_relay_status,
    "DescribeLiveStreamInfoByPage": streams.describe_live_stream_info_by_page,
    "DescribeLiveStreamState": streams.describe_live_stream_state,
    "DescribeClosedStreamInfoByPage": streams.describe_closed_stream_info_by_page,
    "DescribeForbiddenStreamInfoByPage": streams.describe_forbidden_stream_info_by_page,
    "KillStream": streams.kill_stream,
    "ForbidStream": streams.forbid_stream,
    "ResumeStream": streams.resume_stream,
    "DescribeNodeStatus": streams.describe_node_status,
    "DescribeRelayEvents": status.describe_relay_events,
    "UpdateAuthKey": urlauth.update_auth_key,
    "DescribeAuth": urlauth.describe_auth,
    "GeneratePushURL": urlauth.generate_push_url,
    "GeneratePlayURL": urlauth.generate_play_url,
    "DrainNode": cluster.drain_node,
    "DescribeClusterNodes": cluster_nodes.describe_cluster_nodes,
}

__all__ = ["ACTIONS", "API_VERSION", "GET_ACTIONS"]
