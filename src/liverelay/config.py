"""Settings: command-line flags > environment > TOML file > defaults (pydantic-settings).

The TOML file has one table per section ([api], [media], [relay], [webhook], [cluster]), each key
named as the field. Environment variables are LIVERELAY_<SECTION>_<KEY> (e.g.
LIVERELAY_RELAY_LINGER_S=5), LIVERELAY_<KEY> for the top-level keys (LIVERELAY_DATA_DIR,
LIVERELAY_DATABASE_URL, LIVERELAY_LOG_LEVEL), plus the listen addresses
LIVERELAY_API_LISTEN / LIVERELAY_HTTP_LISTEN / LIVERELAY_RTMP_LISTEN. Lists are
comma-separated in the environment.

Every value is range-checked when the settings are built (`load_settings`): a bad one
raises ConfigError with one line naming the setting, the value and where it came from.
Besides the typed ranges below, every section rejects a negative number in any numeric
field and a 0 in any `*timeout_s` field, so a setting added later is checked too.
`Settings()` alone is the defaults (and keyword arguments): it reads no environment.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .netaddr import parse_hostport


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


# -- value types: each names what it accepts, checked when the settings are built ----------


def _check_listen(value: str) -> str:
    parse_hostport(value)  # ValueError names what is wrong with it
    return value


def _split_list(value: object) -> object:
    """The environment gives lists as 'a, b'; TOML gives real arrays."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _check_cidrs(value: list[str]) -> list[str]:
    for cidr in value:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ValueError(f"{cidr!r} is not a CIDR such as 10.0.0.0/8") from None
    return value


def _check_webhook_url(value: str) -> str:
    if value and not value.lower().startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL (or empty for no webhook)")
    return value


def _check_node_id(value: str) -> str:
    # The rule of relay/loops.py's node ids: they travel in URLs and log lines.
    if value and not re.fullmatch(r"[0-9A-Za-z_-]{1,32}", value):
        raise ValueError("must be 1-32 letters, digits, '_' or '-' (or empty: generated)")
    return value


def _check_log_level(value: str) -> str:
    level = value.upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return level


Listen = Annotated[str, AfterValidator(_check_listen)]  # HOST:PORT, :PORT or [v6]:PORT
Cidrs = Annotated[list[str], BeforeValidator(_split_list), AfterValidator(_check_cidrs)]
Seconds = Annotated[float, Field(gt=0)]  # a timeout or interval: 0 would never wait or spin
Positive = Annotated[int, Field(gt=0)]
ChunkSize = Annotated[int, Field(ge=128, le=65536)]  # what RTMP peers accept in practice
WebhookUrl = Annotated[str, AfterValidator(_check_webhook_url)]
LogLevel = Annotated[str, AfterValidator(_check_log_level)]
NodeId = Annotated[str, AfterValidator(_check_node_id)]


class _Section(BaseModel):
    """One [section] of settings. Unknown keys are errors (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _generic_ranges(cls, value: object, info: ValidationInfo) -> object:
        # The net under every numeric setting, typed or not: no negative sizes, counts or
        # durations, and a timeout of 0 would fail every operation at once.
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value < 0:
                raise ValueError("must not be negative")
            if value == 0 and (info.field_name or "").endswith("timeout_s"):
                raise ValueError("a timeout must be greater than 0")
        return value


class ApiSettings(_Section):
    listen: Listen = "127.0.0.1:8180"
    # Allowed difference between X-Date and the node's clock, in seconds.
    max_skew_s: Positive = 900
    # Requests per second per access key (the Volcengine limit for these actions).
    rate_limit_per_s: Seconds = 10.0
    rate_burst: Positive = 10
    max_body_bytes: Positive = 1 << 20
    region: str = "cn-north-1"
    service: str = "live"
    header_timeout_s: float = 10.0  # the first request head must arrive within this after connect
    idle_timeout_s: float = 15.0  # keep-alive idle before the listener closes the connection
    max_conns_per_ip: int = 256  # concurrent connections per client address (0 = no cap)
    conn_cap_exempt_loopback: bool = False  # loopback clients not counted by max_conns_per_ip
    tls_cert: str = ""  # PEM certificate (chain): with tls_key the API listener (and /console/) is HTTPS
    tls_key: str = ""  # PEM private key file of tls_cert
    console: bool = True  # serve the web console at /console/ on the API listener
    console_vendor_dir: str = ""  # node_modules with hls.js/mpegts.js ("" = the one beside the source tree)
    closed_stream_history: int = 1000  # ended streams kept for DescribeClosedStreamInfoByPage
    max_forbidden_streams: int = 10000  # entries in the ForbidStream list
    unauth_rate_per_ip: float = 5.0  # failed-auth requests/s per client address (0 = no limit)
    unauth_burst_per_ip: Positive = 50  # failed-auth requests an address may send at once


class MediaSettings(_Section):
    http_listen: Listen = "127.0.0.1:8080"
    rtmp_listen: Listen = "127.0.0.1:1935"
    # Vhost used for a Host/tcUrl domain that is not in the domain table;
    # empty string = strict: unknown domains are refused.
    default_vhost: str = "__defaultVhost__"
    rtmp_chunk_size: ChunkSize = 4096
    gop_cache: bool = True
    gop_max_bytes: int = 8 << 20
    gop_max_ms: int = 12_000
    # Per-viewer queue bound: past it the viewer skips to the next keyframe.
    viewer_queue_bytes: Positive = 4 << 20
    # A viewer still behind after this many skips in a row is disconnected.
    viewer_max_skips: int = 3
    # Viewers' writers are woken at most once per this much media time (0 = every
    # frame): fewer, larger socket writes for at most this much added latency.
    viewer_flush_ms: int = 50
    handshake_timeout_s: Seconds = 10.0
    idle_timeout_s: Seconds = 30.0
    max_message_bytes: Positive = 16 << 20
    rtmp_command_bytes_before_connect: int = 16 << 10  # largest RTMP command before connect
    rtmp_command_bytes: int = 64 << 10  # largest RTMP command (and control message) after connect
    rtmp_data_bytes: int = 256 << 10  # largest RTMP data message (onMetaData)
    rtmp_buffer_before_connect: int = 32 << 10  # bytes one RTMP connection may hold before connect
    rtmp_buffer_before_publish: int = 256 << 10  # ... once connected, until it publishes
    rtmp_buffer_bytes: int = 32 << 20  # ... while publishing (partial messages + unparsed input)
    rtmp_buffer_total_bytes: int = 256 << 20  # all RTMP connections together
    rtmp_amf0_max_elements: int = 1024  # AMF0 values per command/data message decode
    rtmp_amf0_max_depth: int = 32  # AMF0 nesting levels per decode
    http_header_timeout_s: float = 10.0  # HTTP-FLV listener: first request head within this of connect
    http_idle_timeout_s: float = 15.0  # HTTP-FLV listener: keep-alive idle before closing
    rtmp_setup_timeout_s: float = 15.0  # RTMP: connect to publish/play (handshake included) within this
    max_conns_per_ip: int = 256  # per listener (HTTP, RTMP): concurrent connections per client address
    conn_cap_exempt_loopback: bool = False  # loopback clients not counted by max_conns_per_ip
    hls_enabled: bool = True  # serve HLS (/{app}/{stream}.m3u8) and LL-HLS (/{app}/{stream}/index.m3u8)
    hls_target_duration_ms: int = 0  # HLS segment target; 0 = the stream's first GOP (clamped 1-10 s)
    hls_part_target_ms: int = 333  # LL-HLS part target (PART-TARGET)
    hls_window_segments: int = 6  # segments listed per HLS playlist
    hls_max_window_bytes: int = 64 << 20  # bytes one HLS variant (TS or fMP4) holds; oldest segments go first
    hls_linger_s: float = 30.0  # an HLS muxer stops after this long without a fetch
    hls_session_timeout_s: float = 20.0  # an HLS viewer session ends after this long without a fetch
    hls_max_sessions: int = 10000  # HLS viewer sessions on the node (new ones get 503 past it)
    hls_max_muxers: int = 500  # streams with a running HLS muxer (new ones get 503 past it)
    hls_block_max_s: float = 10.0  # longest hold of a blocking playlist reload / part request
    hls_cors_origins: list[str] = ["*"]  # origins allowed to fetch HLS (CORS); "*" = any
    hls_gzip: bool = True  # gzip playlists for clients that accept it
    hls_segment_max_age_s: int = 3600  # Cache-Control max-age of segments/parts (immutable URLs)
    hls_min_segments: int = 2  # a new HLS muxer answers once this many segments exist
    open_publish: bool = False  # unsigned publishing allowed without a push key on a non-loopback RTMP bind
    url_host: str = ""  # host[:port] in generated URLs of a vhost with no domain ("" = the listener's)


class RelaySettings(_Section):
    connect_timeout_s: Seconds = 3.0
    first_frame_timeout_s: Seconds = 5.0
    # A viewer waits this long for a play-triggered pull to deliver media.
    start_timeout_s: Seconds = 10.0
    # A source that delivers no media for this long counts as failed.
    no_media_timeout_s: Seconds = 5.0
    linger_s: float = 15.0
    backoff_initial_s: Seconds = 1.0
    backoff_max_s: Seconds = 30.0
    failback: bool = True
    failback_probe_interval_s: Seconds = 10.0
    # Source policy for origin URLs (CIDR lists). Deny wins over allow; an empty
    # allow list allows everything not denied.
    allow_cidrs: Cidrs = []
    deny_cidrs: Cidrs = ["169.254.0.0/16", "fe80::/10", "100.100.100.200/32", "fd00:ec2::254/128"]
    ffmpeg_path: str = "ffmpeg"
    max_starting_pulls_per_vhost: int = 32  # play-triggered pulls starting at once per vhost (0 = no cap)
    max_starting_pulls: int = 128  # play-triggered pulls starting at once on the node (0 = no cap)
    max_hops: int = 4  # longest chain of play-triggered relays a marked request may extend (relay/loops.py)
    node_id: str = ""  # this node's id in relay-loop markers; "" = random per process (relay/loops.py)
    hls_puller: Literal["native", "ffmpeg"] = "native"  # .m3u8 sources: sources/hls.py, or ffmpeg (fallback)
    hls_max_segment_bytes: int = 16 << 20  # one HLS segment (native puller); larger ends the source
    hls_max_playlist_bytes: int = 1 << 20  # one HLS playlist/key body (native puller); larger ends the source
    slow_origin_s: float = 10.0  # window of the slow-origin rule (0 = off; relay/pull/supervisor.py)
    slow_origin_ratio: float = 0.75  # media s per wall s an up origin must deliver per window, or it fails
    pull_read_coalesce_ms: int = 40  # RTMP pull: read ~this much media per wake-up (SO_RCVLOWAT; 0 = off)

    @field_validator("backoff_max_s", mode="after")
    @classmethod
    def _backoff_order(cls, value: float, info: ValidationInfo) -> float:
        initial = info.data.get("backoff_initial_s")
        if isinstance(initial, float) and value < initial:
            raise ValueError(f"is below backoff_initial_s {initial}")
        return value


class WebhookSettings(_Section):
    url: WebhookUrl = ""
    timeout_s: Seconds = 3.0
    retries: int = 3


class ClusterSettings(_Section):
    """Membership and fixed-relay leases; read only when database_url is PostgreSQL (docs/cluster.md)."""

    node_id: NodeId = ""  # this node's id in the cluster; "" = generated once, kept in data_dir/node_id
    advertise_host: str = ""  # host other nodes and `cluster status` use; "" = each listener's host
    heartbeat_s: Seconds = 1.0  # the node's row is written (and every row read) this often
    node_timeout_s: Seconds = 3.0  # a node whose heartbeat is older than this (database clock) is dead
    lease_ttl_s: Seconds = 3.0  # a fixed relay's lease lasts this long unrenewed (renewed every ttl/3)
    handoff_timeout_s: Seconds = 15.0  # a hand-off target without media by then takes the lease anyway
    max_handoffs: Positive = 8  # hand-offs this node has in flight at once (drain and rebalancing)
    prune_after_s: Seconds = 86400.0  # rows of nodes silent this long are deleted
    peer_pulls: bool = True  # a play-triggered pull tries live peers holding the stream before the origins
    peer_wait_s: Seconds = (
        15.0  # a pull from peers holds its viewers this long without media (> lease_ttl_s + start)
    )


class Settings(BaseSettings):
    """The node's settings. `Settings()` is the defaults; `load_settings` adds file, env and flags."""

    model_config = SettingsConfigDict(extra="forbid")

    data_dir: Path = Path(".liverelay-data")
    database_url: str = ""  # empty = sqlite in data_dir
    log_level: LogLevel = "INFO"
    api: ApiSettings = Field(default_factory=ApiSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    relay: RelaySettings = Field(default_factory=RelaySettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    database_pool_size: Positive = 5  # PostgreSQL connections per node for API reads and writes
    database_timeout_s: Seconds = 5.0  # PostgreSQL connect/query bound: past it the API answers 503
    database_keepalive_s: Seconds = 2.0  # LISTEN check interval: bounds outage / lost-notification detection

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "liverelay.db"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only keyword arguments: the layers (file, env, flags) are put together by
        # load_settings, which keeps each one apart to tell where a value came from.
        return (init_settings,)


SECTIONS: dict[str, type[_Section]] = {
    "api": ApiSettings,
    "media": MediaSettings,
    "relay": RelaySettings,
    "webhook": WebhookSettings,
    "cluster": ClusterSettings,
}
TOP_LEVEL = (
    "data_dir",
    "database_url",
    "log_level",
    "database_pool_size",
    "database_timeout_s",
    "database_keepalive_s",
)
# Environment variables kept from before the LIVERELAY_<SECTION>_<KEY> scheme.
ENV_ALIASES = {
    "LIVERELAY_API_LISTEN": "api.listen",
    "LIVERELAY_HTTP_LISTEN": "media.http_listen",
    "LIVERELAY_RTMP_LISTEN": "media.rtmp_listen",
}

Origin = Literal["default", "file", "env", "flag"]
Nested = dict[str, object]


def env_var_for(name: str) -> str:
    """'relay.linger_s' -> LIVERELAY_RELAY_LINGER_S (the alias for the listen addresses)."""
    for var, target in ENV_ALIASES.items():
        if target == name:
            return var
    return "LIVERELAY_" + name.replace(".", "_").upper()


def setting_names() -> list[str]:
    """Every setting as a dotted name ('data_dir', 'relay.linger_s' ...), in declaration order."""
    names = list(TOP_LEVEL)
    for section, model in SECTIONS.items():
        names += [f"{section}.{key}" for key in model.model_fields]
    return names


class _EnvSource(PydanticBaseSettingsSource):
    """LIVERELAY_* variables of `env` as a nested dict of raw strings (pydantic converts them)."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[object, str, bool]:
        # Unused: __call__ builds the whole dict, since the names are not pydantic's own scheme.
        return None, field_name, False

    def __call__(self) -> Nested:
        values: dict[str, str] = {}
        for name in setting_names():
            var = "LIVERELAY_" + name.replace(".", "_").upper()
            if var in self.env:
                values[name] = self.env[var]
        for var, name in ENV_ALIASES.items():
            if var in self.env:
                values[name] = self.env[var]
        return nest(values)


def nest(flat: Mapping[str, object]) -> Nested:
    """{'relay.linger_s': 5} -> {'relay': {'linger_s': 5}}."""
    out: Nested = {}
    for name, value in flat.items():
        section, dot, key = name.partition(".")
        if dot:
            sub = out.setdefault(section, {})
            assert isinstance(sub, dict)
            sub[key] = value
        else:
            out[name] = value
    return out


def flatten(nested: Mapping[str, object]) -> dict[str, object]:
    """The inverse of nest (one level of sections)."""
    out: dict[str, object] = {}
    for name, value in nested.items():
        if name in SECTIONS and isinstance(value, Mapping):
            out.update({f"{name}.{key}": v for key, v in value.items()})
        else:
            out[name] = value
    return out


@dataclass
class Layers:
    """The raw values of each layer by dotted name, lowest precedence first."""

    file: dict[str, object] = field(default_factory=dict)
    env: dict[str, object] = field(default_factory=dict)
    flag: dict[str, object] = field(default_factory=dict)
    config_file: str | None = None

    def origin(self, name: str) -> Origin:
        if name in self.flag:
            return "flag"
        if name in self.env:
            return "env"
        if name in self.file:
            return "file"
        return "default"

    def where(self, name: str) -> str:
        """'env LIVERELAY_X', 'file node.toml', 'flag' or 'default': for error messages."""
        origin = self.origin(name)
        if origin == "env":
            return f"env {env_var_for(name)}"
        if origin == "file":
            return f"file {self.config_file}"
        return origin

    def merged(self) -> dict[str, object]:
        return {**self.file, **self.env, **self.flag}


def read_layers(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Layers:
    """Each layer's values; `overrides` are flag values keyed 'data_dir' or 'relay.linger_s'."""
    layers = Layers(config_file=str(config_file) if config_file else None)
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"cannot read config file {config_file}: no such file")
        try:
            layers.file = flatten(TomlConfigSettingsSource(Settings, toml_file=path)())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc}") from exc
    layers.env = flatten(_EnvSource(Settings, dict(os.environ) if env is None else env)())
    layers.flag = flatten(InitSettingsSource(Settings, nest(_present(overrides or {})))())
    return layers


def _present(values: Mapping[str, object]) -> dict[str, object]:
    return {name: value for name, value in values.items() if value is not None}


def build_settings(layers: Layers) -> Settings:
    """Validate the merged layers; ConfigError (one line) names the first bad setting."""
    try:
        return Settings.model_validate(nest(layers.merged()))
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, layers)) from None


def _one_line(exc: ValidationError, layers: Layers) -> str:
    error = exc.errors(include_url=False)[0]
    loc = [str(part) for part in error["loc"] if not isinstance(part, int)]
    if error["type"] == "extra_forbidden":
        name = ".".join(loc)
        return f"unknown setting {name} (from {layers.where(name)})"
    name = ".".join(loc[:2]) or "settings"
    value = layers.merged().get(name, error.get("input"))
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"setting {name} = {value!r} (from {layers.where(name)}): {message}"


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Build Settings: flags (`overrides`) > `env` (default os.environ) > TOML file > defaults."""
    return build_settings(read_layers(config_file, env, overrides))
