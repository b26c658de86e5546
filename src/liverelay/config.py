"""Settings: command-line flags > environment > TOML file > defaults.

The TOML file has one table per section ([api], [media], [relay], ...), each key
named as the dataclass field. Environment variables are LIVERELAY_<SECTION>_<KEY>
(e.g. LIVERELAY_RELAY_LINGER_S=5), plus LIVERELAY_DATA_DIR and the listen
addresses LIVERELAY_API_LISTEN / LIVERELAY_HTTP_LISTEN / LIVERELAY_RTMP_LISTEN.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


@dataclass
class ApiSettings:
    listen: str = "127.0.0.1:8180"
    # Allowed difference between X-Date and the node's clock, in seconds.
    max_skew_s: int = 900
    # Requests per second per access key (the Volcengine limit for these actions).
    rate_limit_per_s: float = 10.0
    rate_burst: int = 10
    max_body_bytes: int = 1 << 20
    region: str = "cn-north-1"
    service: str = "live"


@dataclass
class MediaSettings:
    http_listen: str = "127.0.0.1:8080"
    rtmp_listen: str = "127.0.0.1:1935"
    # Vhost used for a Host/tcUrl domain that is not in the domain table;
    # empty string = strict: unknown domains are refused.
    default_vhost: str = "__defaultVhost__"
    rtmp_chunk_size: int = 4096
    gop_cache: bool = True
    gop_max_bytes: int = 8 << 20
    gop_max_ms: int = 12_000
    # Per-viewer queue bound: past it the viewer skips to the next keyframe.
    viewer_queue_bytes: int = 4 << 20
    # A viewer still behind after this many skips in a row is disconnected.
    viewer_max_skips: int = 3
    # Viewers' writers are woken at most once per this much media time (0 = every
    # frame): fewer, larger socket writes for at most this much added latency.
    viewer_flush_ms: int = 50
    handshake_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    max_message_bytes: int = 16 << 20
    rtmp_command_bytes_before_connect: int = 16 << 10  # largest RTMP command before connect
    rtmp_command_bytes: int = 64 << 10  # largest RTMP command (and control message) after connect
    rtmp_data_bytes: int = 256 << 10  # largest RTMP data message (onMetaData)
    rtmp_buffer_before_connect: int = 32 << 10  # bytes one RTMP connection may hold before connect
    rtmp_buffer_before_publish: int = 256 << 10  # ... once connected, until it publishes
    rtmp_buffer_bytes: int = 32 << 20  # ... while publishing (partial messages + unparsed input)
    rtmp_buffer_total_bytes: int = 256 << 20  # all RTMP connections together
    rtmp_amf0_max_elements: int = 1024  # AMF0 values per command/data message decode
    rtmp_amf0_max_depth: int = 32  # AMF0 nesting levels per decode


@dataclass
class RelaySettings:
    connect_timeout_s: float = 3.0
    first_frame_timeout_s: float = 5.0
    # A viewer waits this long for a play-triggered pull to deliver media.
    start_timeout_s: float = 10.0
    # A source that delivers no media for this long counts as failed.
    no_media_timeout_s: float = 5.0
    linger_s: float = 15.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    failback: bool = True
    failback_probe_interval_s: float = 10.0
    # Source policy for origin URLs (CIDR lists). Deny wins over allow; an empty
    # allow list allows everything not denied.
    allow_cidrs: list[str] = field(default_factory=list)
    deny_cidrs: list[str] = field(
        default_factory=lambda: ["169.254.0.0/16", "fe80::/10", "100.100.100.200/32", "fd00:ec2::254/128"]
    )
    ffmpeg_path: str = "ffmpeg"
    max_starting_pulls_per_vhost: int = 32  # play-triggered pulls starting at once per vhost (0 = no cap)
    max_starting_pulls: int = 128  # play-triggered pulls starting at once on the node (0 = no cap)


@dataclass
class WebhookSettings:
    url: str = ""
    timeout_s: float = 3.0
    retries: int = 3


@dataclass
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(".liverelay-data"))
    database_url: str = ""  # empty = sqlite in data_dir
    log_level: str = "INFO"
    api: ApiSettings = field(default_factory=ApiSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    relay: RelaySettings = field(default_factory=RelaySettings)
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    database_pool_size: int = 5  # PostgreSQL connections per node for API reads and writes
    database_timeout_s: float = 5.0  # PostgreSQL connect/query bound: past it the API answers 503
    database_keepalive_s: float = 2.0  # LISTEN check interval: bounds outage and lost-notification detection

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "liverelay.db"


_SECTIONS = ("api", "media", "relay", "webhook")


def parse_hostport(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """'HOST:PORT', ':PORT' or '[v6]:PORT' -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep:
        raise ConfigError(f"listen address {value!r} must be HOST:PORT")
    host = host.strip("[]") or default_host
    try:
        port_no = int(port)
    except ValueError as exc:
        raise ConfigError(f"listen address {value!r} has a bad port") from exc
    if not 0 <= port_no <= 65535:
        raise ConfigError(f"listen address {value!r} has a port out of range")
    return host, port_no


def _coerce(current: Any, raw: Any, name: str) -> Any:
    """Convert a TOML/env value to the type of the default it replaces."""
    try:
        if isinstance(current, bool):
            if isinstance(raw, str):
                if raw.lower() in ("1", "true", "yes", "on"):
                    return True
                if raw.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(raw)
            return bool(raw)
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
        if isinstance(current, Path):
            return Path(raw)
        if isinstance(current, list):
            if isinstance(raw, str):
                return [x.strip() for x in raw.split(",") if x.strip()]
            return [str(x) for x in raw]
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name}: cannot use {raw!r}") from exc


def _apply(obj: Any, values: dict[str, Any], prefix: str) -> None:
    known = {f.name for f in dataclasses.fields(obj)}
    for key, raw in values.items():
        if key not in known:
            raise ConfigError(f"unknown setting {prefix}{key}")
        setattr(obj, key, _coerce(getattr(obj, key), raw, prefix + key))


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Build Settings. `overrides` are flag values: keys like 'data_dir' or 'relay.linger_s'."""
    env = dict(os.environ) if env is None else env
    settings = Settings()
    if config_file:
        try:
            data = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc}") from exc
        top = {k: v for k, v in data.items() if k not in _SECTIONS}
        _apply(settings, top, "")
        for section in _SECTIONS:
            if section in data:
                _apply(getattr(settings, section), data[section], f"{section}.")
    # Environment.
    aliases = {
        "LIVERELAY_API_LISTEN": "api.listen",
        "LIVERELAY_HTTP_LISTEN": "media.http_listen",
        "LIVERELAY_RTMP_LISTEN": "media.rtmp_listen",
    }
    for var, target in aliases.items():
        if var in env:
            _set_path(settings, target, env[var])
    for name in ("data_dir", "database_url", "log_level"):
        var = f"LIVERELAY_{name.upper()}"
        if var in env:
            _set_path(settings, name, env[var])
    for section in _SECTIONS:
        obj = getattr(settings, section)
        for f in dataclasses.fields(obj):
            var = f"LIVERELAY_{section.upper()}_{f.name.upper()}"
            if var in env:
                _set_path(settings, f"{section}.{f.name}", env[var])
    for path, value in (overrides or {}).items():
        if value is not None:
            _set_path(settings, path, value)
    for listen in (settings.api.listen, settings.media.http_listen, settings.media.rtmp_listen):
        parse_hostport(listen)
    return settings


def _set_path(settings: Settings, path: str, raw: Any) -> None:
    obj: Any = settings
    *parents, leaf = path.split(".")
    for p in parents:
        obj = getattr(obj, p)
    if not hasattr(obj, leaf):
        raise ConfigError(f"unknown setting {path}")
    setattr(obj, leaf, _coerce(getattr(obj, leaf), raw, path))
