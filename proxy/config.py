"""The proxy's TOML configuration, decoded into frozen msgspec Structs.

:func:`parse_config` is pure: TOML text in, a validated :class:`Config` out, or one
:class:`ConfigError` naming the dotted key (``pools[0].url``, ``difficulty.minimum``) and,
when it can be found, the line of the file it is on. :func:`load_config` is the only
function here that touches the filesystem. Every key except the ``[[pools]]`` entries has a
default, so the smallest valid file is one pool with ``name``, ``url`` and ``user``.

Checks live in each Struct's ``__post_init__``, so a Config built in code (tests, the
simulator) is held to the same rules as one read from a file. :func:`diff_config` tells a
reload which parts of a running proxy a new config touches.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import tomllib
from typing import Any, Final, Literal, TypeAlias

import msgspec
from msgspec import Struct

from proxy.config_errors import ConfigError
from proxy.config_groups import (
    DEFAULT_GROUP,
    GroupConfig,
    GroupMatch,
    RouteConfig,
    check_groups,
    effective_groups,
)

__all__ = [
    "DEFAULT_GROUP",
    "Config",
    "ConfigDiff",
    "ConfigError",
    "DifficultyConfig",
    "GroupConfig",
    "GroupMatch",
    "HttpConfig",
    "LogConfig",
    "LogFormat",
    "LogLevel",
    "PoolConfig",
    "RouteConfig",
    "ServerConfig",
    "UpstreamConfig",
    "diff_config",
    "load_config",
    "parse_config",
    "parse_listen_address",
    "parse_pool_url",
]

LogLevel: TypeAlias = Literal["debug", "info", "warning", "error"]
"""The lowest log level that is emitted."""

LogFormat: TypeAlias = Literal["console", "json"]
"""``console``: human-readable lines; ``json``: one JSON object per line for a log shipper."""

LOG_LEVELS: Final[tuple[str, ...]] = ("debug", "info", "warning", "error")
"""The accepted ``log.level`` values, most verbose first."""

LOG_FORMATS: Final[tuple[str, ...]] = ("console", "json")
"""The accepted ``log.format`` values."""

POOL_SCHEMES: Final[dict[str, bool]] = {"stratum+tcp": False, "stratum+ssl": True}
"""Accepted pool URL schemes, mapped to whether the connection uses TLS."""

_POOL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# A hostname or IPv4 address. Deliberately loose (DNS allows more than RFC 1123 suggests and
# the resolver is the real judge); it exists to reject spaces, slashes and a bare IPv6.
_HOSTNAME = re.compile(r"[A-Za-z0-9_.-]{1,253}")


# --------------------------------------------------------------------------- addresses


def parse_listen_address(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (IPv6 as ``[::]:3333``) into ``(host, port)``.

    The host comes back without brackets, as :func:`asyncio.start_server` wants it. Port 0
    is accepted (the OS picks a free port), which is what tests binding ephemerally need.
    Raises :class:`ValueError` with a one-line reason.
    """
    return _split_host_port(text, min_port=0)


def parse_pool_url(url: str) -> tuple[str, int, bool]:
    """Split ``stratum+tcp://host:port`` or ``stratum+ssl://host:port`` into ``(host, port, tls)``.

    Raises :class:`ValueError` with a one-line reason for any other scheme, a missing port,
    a port outside 1..65535, or a path, query or credentials in the URL (the worker name
    belongs in ``user``, not in the URL).
    """
    if "@" in url:
        # Checked first and never echoed: whatever precedes "@" may be a password.
        raise ValueError("credentials in the url are not supported (set user and password instead)")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"expected stratum+tcp://HOST:PORT or stratum+ssl://HOST:PORT, got {url!r}")
    tls = POOL_SCHEMES.get(scheme.lower())
    if tls is None:
        raise ValueError(f"unsupported scheme {scheme!r} (use stratum+tcp or stratum+ssl)")
    rest = rest.removesuffix("/")
    if "@" in rest:
        raise ValueError("credentials in the url are not supported (set user and password instead)")
    if any(c in rest for c in "/?#"):
        raise ValueError(f"unexpected path or query in {url!r} (expected {scheme}://HOST:PORT)")
    host, port = _split_host_port(rest, min_port=1)
    return host, port, tls


def _split_host_port(text: str, *, min_port: int) -> tuple[str, int]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"unclosed '[' in {text!r}")
        host, tail = text[1:end], text[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address") from None
        if not tail:
            raise ValueError(f"missing port in {text!r} (expected [HOST]:PORT)")
        if not tail.startswith(":"):
            raise ValueError(f"expected ':PORT' after ']' in {text!r}")
        port_text = tail[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"missing port in {text!r} (expected HOST:PORT)")
        if ":" in host:
            raise ValueError(f"an IPv6 host must be in brackets, as in [::1]:3333, got {text!r}")
        if not _HOSTNAME.fullmatch(host):
            raise ValueError(f"invalid host {host!r} in {text!r}")
    # isdigit() also accepts non-ASCII digits (fullwidth, Arabic-Indic); require plain 0-9.
    if not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f"missing or invalid port in {text!r}")
    port = int(port_text)
    if not min_port <= port <= 65535:
        raise ValueError(f"port {port} out of range {min_port}..65535")
    return host, port


# --------------------------------------------------------------------------- checks


def _check_positive(key: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"must be a finite number > 0, got {value!r}", key=key)


def _check_range(key: str, value: int, low: int, high: int | None = None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ConfigError(f"must be {bound}, got {value!r}", key=key)


MAX_DRAIN_WAIT = 300.0
"""Longest reconnect wait a drain may ask of miners: beyond it they are simply off."""


def _check_target(key: str, text: str) -> None:
    """A ``HOST:PORT`` miners can connect to: a real host (no wildcard) and a port > 0."""
    try:
        host, _port = _split_host_port(text, min_port=1)
    except ValueError as exc:
        raise ConfigError(str(exc), key=key) from None
    if host in ("", "0.0.0.0", "::"):
        raise ConfigError(f"needs a host miners can reach, not a wildcard: {text!r}", key=key)


def _check_address(key: str, text: str) -> None:
    try:
        parse_listen_address(text)
    except ValueError as exc:
        raise ConfigError(str(exc), key=key) from None


# --------------------------------------------------------------------------- schema


class ServerConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[server]``: the miner-facing side."""

    listen: tuple[str, ...] = ("0.0.0.0:3333",)
    """Addresses miners connect to, each ``HOST:PORT`` (IPv6 as ``[::]:3333``)."""
    max_line_bytes: int = 16384
    """Longest line accepted from a miner (1024..1048576); longer lines are peer errors."""
    handshake_timeout: float = 30.0
    """Seconds a new connection has to subscribe and authorize before it is closed."""
    idle_timeout: float = 600.0
    """Seconds without a line from a miner after which its connection is closed."""
    error_budget: int = 20
    """Peer errors (bad JSON, unknown methods, ...) tolerated before a connection is closed."""
    max_miners: int = 20000
    """Connections accepted at once; more are refused at accept time."""
    submit_timeout: float = 10.0
    """Seconds a miner waits for the pool's verdict on a forwarded share before it is sent
    the proxy's own verdict."""
    ntime_window: int = 7000
    """Seconds a share's ntime may run ahead of its job's ntime."""
    drain_grace: float = 10.0
    """Seconds a stopping proxy waits for pool verdicts on shares in flight and for miners
    to leave after ``client.reconnect``, before it closes what is left."""
    drain_target: str | None = None
    """``HOST:PORT`` miners are sent to by a drain's ``client.reconnect`` (another instance);
    unset, each miner is sent back to the address it connected to (behind a balancer, the
    balancer's frontend from the PROXY header), never an empty host, which cpuminer ignores."""
    drain_wait: float = 0.0
    """Seconds a drain's ``client.reconnect`` tells miners to wait. 0 suits an upgrade with
    ``reuse_port`` (the new process already listens), a ``drain_target`` or a balancer; for a
    stop and start at one address set the restart time, so miners do not reconnect into a
    closed port and back off (bfgminer waits 30 s after a refused connection)."""
    reuse_port: bool = False
    """Bind listeners with SO_REUSEPORT, so a new process can start beside the old one
    during an upgrade (the kernel spreads new connections over both)."""
    proxy_protocol: bool = False
    """Expect a PROXY protocol v1 or v2 header (from HAProxy or a cloud load balancer) on
    every miner connection, giving the miner's real address."""
    trusted_proxies: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    """Networks allowed to send PROXY headers; other peers are refused when
    ``proxy_protocol`` is on (a miner must not be able to forge its address)."""

    def __post_init__(self) -> None:
        if not self.listen:
            raise ConfigError("at least one listen address is required", key="listen")
        for i, address in enumerate(self.listen):
            _check_address(f"listen[{i}]", address)
            if address in self.listen[:i]:
                raise ConfigError(f"duplicate listen address {address!r}", key=f"listen[{i}]")
        _check_range("max_line_bytes", self.max_line_bytes, 1024, 1048576)
        _check_positive("handshake_timeout", self.handshake_timeout)
        _check_positive("idle_timeout", self.idle_timeout)
        _check_range("error_budget", self.error_budget, 1)
        _check_range("max_miners", self.max_miners, 1)
        _check_positive("submit_timeout", self.submit_timeout)
        _check_range("ntime_window", self.ntime_window, 0)
        _check_positive("drain_grace", self.drain_grace)
        if self.drain_target is not None:
            _check_target("drain_target", self.drain_target)
        if not (math.isfinite(self.drain_wait) and 0 <= self.drain_wait <= MAX_DRAIN_WAIT):
            raise ConfigError(
                f"must be between 0 and {MAX_DRAIN_WAIT:g} seconds, got {self.drain_wait!r}", key="drain_wait"
            )
        for i, network in enumerate(self.trusted_proxies):
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError(f"not a network: {network!r}", key=f"trusted_proxies[{i}]") from None

    @property
    def listen_addresses(self) -> tuple[tuple[str, int], ...]:
        """``listen`` as ``(host, port)`` pairs, IPv6 hosts without brackets."""
        return tuple(parse_listen_address(a) for a in self.listen)

    @property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """``trusted_proxies`` parsed."""
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.trusted_proxies)


class PoolConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One ``[[pools]]`` entry; the list is in priority order, the first is the primary."""

    name: str
    """Unique name used in logs, metrics and reload diffs (``[A-Za-z0-9_.-]{1,64}``)."""
    url: str
    """``stratum+tcp://HOST:PORT`` or ``stratum+ssl://HOST:PORT``."""
    user: str
    """Account or ``account.worker`` the proxy authorizes as upstream."""
    password: str = "x"
    """Password sent with ``mining.authorize``; most pools ignore it."""
    ca_file: str | None = None
    """PEM file of CA certificates to trust for ``stratum+ssl`` instead of the system's
    (a pool behind a private CA); the certificate and host name are verified either way."""

    def __post_init__(self) -> None:
        if not _POOL_NAME.fullmatch(self.name):
            raise ConfigError(f"must match [A-Za-z0-9_.-]{{1,64}}, got {self.name!r}", key="name")
        try:
            parse_pool_url(self.url)
        except ValueError as exc:
            raise ConfigError(str(exc), key="url") from None
        if not self.user.strip():
            raise ConfigError("must not be empty", key="user")

    def __repr__(self) -> str:
        # Never let the password reach a log line or an error message through repr().
        return (
            f"PoolConfig(name={self.name!r}, url={self.url!r}, user={self.user!r}, password='***', "
            f"ca_file={self.ca_file!r})"
        )

    @property
    def host(self) -> str:
        """Pool host from ``url`` (IPv6 without brackets)."""
        return parse_pool_url(self.url)[0]

    @property
    def port(self) -> int:
        """Pool port from ``url``."""
        return parse_pool_url(self.url)[1]

    @property
    def tls(self) -> bool:
        """Whether ``url`` asks for TLS (``stratum+ssl``)."""
        return parse_pool_url(self.url)[2]


class UpstreamConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[upstream]``: how the proxy talks to pools."""

    connect_timeout: float = 10.0
    """Seconds for the TCP (and TLS) connect to a pool."""
    handshake_timeout: float = 10.0
    """Seconds for the pool to answer subscribe and authorize."""
    silence_timeout: float = 120.0
    """Seconds without any message or job from a pool after which it is marked down."""
    backoff_initial: float = 1.0
    """First reconnect delay in seconds; it doubles on each failure."""
    backoff_max: float = 60.0
    """Cap on the reconnect delay, seconds (>= backoff_initial)."""
    primary_hold: float = 30.0
    """Seconds the primary must stay healthy before miners are moved back to it, so a
    flapping primary does not bounce the farm; 0 moves them back at once."""
    miners_per_connection: int = 65536
    """Miners to aim for per upstream connection; sizes the extranonce prefix."""
    allow_redirect: bool = False
    """Follow ``client.reconnect`` to another host (off: a pool cannot send the farm elsewhere)."""
    suggest_difficulty: bool = True
    """Send ``mining.suggest_difficulty`` upstream when miners would want more than the
    pool's difficulty, to cut the number of shares forwarded."""
    job_timeout: float = 300.0
    """Seconds without a new job (repeats do not count) after which a pool is degraded:
    its miners work on a stale block; 0 turns the check off."""
    reject_ratio: float = 0.5
    """Share of forwarded shares the pool rejected over ``health_window`` above which it is
    degraded (0 < ratio <= 1)."""
    latency_p99: float = 5.0
    """Seconds: a pool whose 99th percentile submit round trip over ``health_window`` is
    above this is degraded."""
    health_window: float = 300.0
    """Seconds of pool verdicts the reject ratio and the latency are judged over."""
    health_min_shares: int = 20
    """Verdicts a window needs before its reject ratio or latency can degrade a pool."""

    def __post_init__(self) -> None:
        _check_positive("connect_timeout", self.connect_timeout)
        _check_positive("handshake_timeout", self.handshake_timeout)
        _check_positive("silence_timeout", self.silence_timeout)
        _check_positive("backoff_initial", self.backoff_initial)
        _check_positive("backoff_max", self.backoff_max)
        if self.backoff_max < self.backoff_initial:
            raise ConfigError(
                f"must be >= upstream.backoff_initial ({self.backoff_initial!r})", key="backoff_max"
            )
        if not (math.isfinite(self.primary_hold) and self.primary_hold >= 0):
            raise ConfigError(f"must be a finite number >= 0, got {self.primary_hold!r}", key="primary_hold")
        # 2**32: the extranonce prefix is at most 4 bytes, whatever the pool's extranonce2 size.
        _check_range("miners_per_connection", self.miners_per_connection, 1, 2**32)
        if not (math.isfinite(self.job_timeout) and self.job_timeout >= 0):
            raise ConfigError(f"must be a finite number >= 0, got {self.job_timeout!r}", key="job_timeout")
        if not (math.isfinite(self.reject_ratio) and 0 < self.reject_ratio <= 1):
            raise ConfigError(f"must be > 0 and <= 1, got {self.reject_ratio!r}", key="reject_ratio")
        _check_positive("latency_p99", self.latency_p99)
        _check_positive("health_window", self.health_window)
        _check_range("health_min_shares", self.health_min_shares, 1, 100_000)


class DifficultyConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[difficulty]``: the share difficulty the proxy sets on miners (vardiff bounds)."""

    initial: float = 16384.0
    """Difficulty a miner starts at (and stays at with vardiff off)."""
    minimum: float = 1024.0
    """Lowest difficulty vardiff may set; far below 1 is fine for CPU test miners."""
    maximum: float = 1e15
    """Highest difficulty vardiff may set."""
    target_share_interval: float = 10.0
    """Seconds between shares vardiff aims for, per miner."""
    vardiff: bool = True
    """Adjust each miner's difficulty; off keeps every miner at ``initial``."""
    retarget_interval: float = 30.0
    """Minimum seconds between two vardiff evaluations of a miner."""

    def __post_init__(self) -> None:
        for key in ("initial", "minimum", "maximum", "target_share_interval", "retarget_interval"):
            _check_positive(key, getattr(self, key))
        if self.minimum > self.initial:
            raise ConfigError(f"must be <= difficulty.initial ({self.initial!r})", key="minimum")
        if self.initial > self.maximum:
            raise ConfigError(f"must be <= difficulty.maximum ({self.maximum!r})", key="initial")


class LogConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[log]``: structlog output."""

    level: LogLevel = "info"
    """Lowest level emitted: ``debug``, ``info``, ``warning`` or ``error``."""
    format: LogFormat = "console"
    """``console`` for people, ``json`` for log shippers."""
    status_interval: float = 60.0
    """Seconds between one-line fleet summaries at info level; 0 turns them off."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.status_interval) or self.status_interval < 0:
            raise ConfigError("must be a finite number >= 0", key="status_interval")


class HttpConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[http]``: the metrics and admin endpoint."""

    listen: str = "127.0.0.1:9100"
    """``HOST:PORT`` of the HTTP endpoint (loopback by default: metrics name every worker)."""
    admin_token_file: str | None = None
    """File holding the bearer token for admin endpoints; ``None`` disables them."""
    enabled: bool = True
    """Serve the HTTP endpoint at all."""
    worker_expiry: float = 86_400.0
    """Seconds after its last connection closed that a worker's series disappear, so the
    metrics follow the live fleet."""
    max_workers: int = 100_000
    """Distinct worker names tracked at most; names beyond are counted as ``_other``."""

    def __post_init__(self) -> None:
        _check_address("listen", self.listen)
        _check_positive("worker_expiry", self.worker_expiry)
        _check_range("max_workers", self.max_workers, 1)
        if self.admin_token_file is not None and not self.admin_token_file.strip():
            raise ConfigError(
                "must not be empty (leave the key out to disable admin)", key="admin_token_file"
            )

    @property
    def listen_address(self) -> tuple[str, int]:
        """``listen`` as ``(host, port)``, an IPv6 host without brackets."""
        return parse_listen_address(self.listen)


class Config(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The whole configuration file."""

    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    """``[server]``."""
    pools: tuple[PoolConfig, ...] = ()
    """``[[pools]]`` in priority order; at least one is required."""
    upstream: UpstreamConfig = msgspec.field(default_factory=UpstreamConfig)
    """``[upstream]``."""
    difficulty: DifficultyConfig = msgspec.field(default_factory=DifficultyConfig)
    """``[difficulty]``."""
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    """``[log]``."""
    http: HttpConfig = msgspec.field(default_factory=HttpConfig)
    """``[http]``."""
    groups: tuple[GroupConfig, ...] = ()
    """``[[groups]]``: hashrate split across pools by weight; none is one route over every
    pool in priority order (see :mod:`proxy.config_groups`)."""

    def __post_init__(self) -> None:
        # An empty default rather than a required field, so a missing [[pools]] gets this
        # message instead of msgspec's "missing required field".
        if not self.pools:
            raise ConfigError("at least one [[pools]] entry with url and user is required", key="pools")
        seen: dict[str, int] = {}
        for i, pool in enumerate(self.pools):
            if pool.name in seen:
                raise ConfigError(
                    f"duplicate pool name {pool.name!r} (also pools[{seen[pool.name]}])",
                    key=f"pools[{i}].name",
                )
            seen[pool.name] = i
        check_groups(self.groups, [p.name for p in self.pools], self.server.listen)

    @property
    def routing_groups(self) -> tuple[GroupConfig, ...]:
        """The groups miners are placed by: the configured ones, then ``default``."""
        return effective_groups(self.groups, [p.name for p in self.pools])

    @property
    def primary(self) -> PoolConfig:
        """The highest-priority pool."""
        return self.pools[0]


# --------------------------------------------------------------------------- parsing


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and parse the config file at ``path``.

    An unreadable file raises :class:`ConfigError` too, naming the path, so callers have
    one exception to handle.
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            raw = f.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot read config file: {reason}", source=source) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: {exc.reason} at byte {exc.start}", source=source) from None
    return parse_config(text, source)


def parse_config(text: str, source: str = "<config>") -> Config:
    """Parse and validate TOML ``text``; ``source`` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(str(exc), text, source) from None
    try:
        return msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        key, message = _explain(exc)
        raise ConfigError(message, key=key, line=_locate(text, key), source=source) from None


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_MSGSPEC_PATH = re.compile(r"^(.*?) - at `\$(.*)`$")
_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `(.*)`$")
_MISSING_FIELD = re.compile(r"^Object missing required field `(.*)`$")


def _syntax_error(message: str, text: str, source: str) -> ConfigError:
    # Python 3.11's TOMLDecodeError carries the position only inside its message.
    match = _TOML_POSITION.search(message)
    if match is None:
        return ConfigError(f"invalid TOML: {message}", source=source)
    line = int(match[1])
    message = f"invalid TOML: {message[: match.start()]} (column {match[2]})"
    # Best guess at the key: whatever key the scan finds on that line, if any.
    key = next((k for k, n in _key_lines(text).items() if n == line and not k.endswith("]")), "")
    return ConfigError(message, key=key, line=line, source=source)


def _explain(exc: msgspec.ValidationError) -> tuple[str, str]:
    """Turn msgspec's ``"<what> - at `$.a[0].b`"`` into ``("a[0].b", "<what>")``."""
    text = str(exc)
    match = _MSGSPEC_PATH.match(text)
    what, path = (match[1], match[2].lstrip(".")) if match else (text, "")
    cause = exc.__cause__
    if isinstance(cause, ConfigError):
        # Raised by a __post_init__: its key is relative to the Struct at `path`.
        return _join(path, cause.key), cause.message
    if m := _UNKNOWN_FIELD.match(what):
        return _join(path, m[1]), _unknown_key_message(path, m[1])
    if m := _MISSING_FIELD.match(what):
        return _join(path, m[1]), "required key is missing"
    if what.startswith("Invalid enum value"):
        choices = {"log.level": LOG_LEVELS, "log.format": LOG_FORMATS}.get(path)
        if choices is not None:
            return path, f"{what.removeprefix('Invalid enum value ')} is not one of {', '.join(choices)}"
    what = what.replace("`object`", "`table`").replace("`", "")
    return path, what[:1].lower() + what[1:]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path and key else path or key


def _unknown_key_message(path: str, name: str) -> str:
    struct = _struct_at(path)
    known = list(struct.__struct_fields__) if struct is not None else []
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    if known:
        return f"unknown key (expected one of: {', '.join(known)})"
    return "unknown key"


def _struct_at(path: str) -> type[Struct] | None:
    """The Struct class that a msgspec path like ``pools[0]`` or ``server`` points at."""
    struct: type[Struct] = Config
    for part in filter(None, re.sub(r"\[\d+\]", "", path).split(".")):
        field = next((f for f in msgspec.structs.fields(struct) if f.name == part), None)
        if field is None:
            return None
        inner: Any = field.type
        # tuple[PoolConfig, ...] -> PoolConfig
        args = getattr(inner, "__args__", None)
        if args:
            inner = args[0]
        if not (isinstance(inner, type) and issubclass(inner, Struct)):
            return None
        struct = inner
    return struct


# --------------------------------------------------------------------------- line scan

_TABLE_ARRAY_HEADER = re.compile(r"^\s*\[\[\s*([^\[\]]+?)\s*\]\]\s*(#.*)?$")
_TABLE_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_KEY_LINE = re.compile(r"""^\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*=""")


def _key_lines(text: str) -> dict[str, int]:
    """Map dotted keys (``server``, ``pools[1]``, ``pools[1].url``) to their first line.

    A line-by-line scan that follows ``[table]`` and ``[[array]]`` headers; it does not
    understand dotted keys or inline tables, which only costs a less precise line.
    """
    lines: dict[str, int] = {}
    table = ""
    array_counts: dict[str, int] = {}
    in_multiline: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline is not None:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        if match := _TABLE_ARRAY_HEADER.match(line):
            name = _normalize_table(match[1])
            index = array_counts.get(name, 0)
            array_counts[name] = index + 1
            table = f"{name}[{index}]"
            lines.setdefault(name, number)
            lines.setdefault(table, number)
        elif match := _TABLE_HEADER.match(line):
            table = _normalize_table(match[1])
            lines.setdefault(table, number)
        elif match := _KEY_LINE.match(line):
            key = next(g for g in match.groups() if g is not None)
            lines.setdefault(_join(table, key), number)
        # A multi-line string opened (and not closed) on this line: skip until it closes.
        for quote in ('"""', "'''"):
            if line.count(quote) % 2 == 1:
                in_multiline = quote
                break
    return lines


def _normalize_table(name: str) -> str:
    return ".".join(part.strip().strip("\"'") for part in name.split("."))


def _locate(text: str, key: str) -> int | None:
    """Line of ``key``, else of the nearest enclosing key or table that is in the file."""
    if not key:
        return None
    lines = _key_lines(text)
    while key:
        if key in lines:
            return lines[key]
        # Drop the last component: "pools[0].url" -> "pools[0]" -> "pools".
        key = re.sub(r"(\[\d+\]|\.?[^.\[\]]+)$", "", key)
    return None


# --------------------------------------------------------------------------- reload diff


class ConfigDiff(Struct, frozen=True, kw_only=True):
    """What changed between two configs, for a reload to act on only that."""

    pools_added: tuple[str, ...] = ()
    """Names of pools only in the new config, in its order."""
    pools_removed: tuple[str, ...] = ()
    """Names of pools only in the old config, in its order."""
    pools_changed: tuple[str, ...] = ()
    """Names in both whose url, user or password changed (their connections must restart)."""
    pools_reordered: bool = False
    """The pools present in both are in a different priority order."""
    primary_changed: bool = False
    """The first pool is a different one (by name)."""
    difficulty_changed: bool = False
    """Anything in ``[difficulty]`` changed."""
    server_limits_changed: bool = False
    """Anything in ``[server]`` other than ``listen`` changed (applies to new connections)."""
    listeners_added: tuple[str, ...] = ()
    """Listen addresses to open."""
    listeners_removed: tuple[str, ...] = ()
    """Listen addresses to close."""
    log_changed: bool = False
    """Anything in ``[log]`` changed."""
    upstream_changed: bool = False
    """Anything in ``[upstream]`` changed."""
    http_changed: bool = False
    """Anything in ``[http]`` changed."""
    groups_changed: bool = False
    """Anything in ``[[groups]]`` changed (API weight overrides are replaced by the file's)."""

    @property
    def changed(self) -> bool:
        """Whether anything at all differs."""
        return self != ConfigDiff()


def diff_config(old: Config, new: Config) -> ConfigDiff:
    """Compare two configs; pools are matched by name, listeners by their exact text."""
    old_pools = {p.name: p for p in old.pools}
    new_pools = {p.name: p for p in new.pools}
    common_old = [p.name for p in old.pools if p.name in new_pools]
    common_new = [p.name for p in new.pools if p.name in old_pools]
    old_server = msgspec.structs.asdict(old.server)
    new_server = msgspec.structs.asdict(new.server)
    del old_server["listen"], new_server["listen"]
    return ConfigDiff(
        pools_added=tuple(n for n in new_pools if n not in old_pools),
        pools_removed=tuple(n for n in old_pools if n not in new_pools),
        pools_changed=tuple(n for n in common_new if old_pools[n] != new_pools[n]),
        pools_reordered=common_old != common_new,
        primary_changed=old.primary.name != new.primary.name,
        difficulty_changed=old.difficulty != new.difficulty,
        server_limits_changed=old_server != new_server,
        listeners_added=tuple(a for a in new.server.listen if a not in old.server.listen),
        listeners_removed=tuple(a for a in old.server.listen if a not in new.server.listen),
        log_changed=old.log != new.log,
        upstream_changed=old.upstream != new.upstream,
        http_changed=old.http != new.http,
        groups_changed=old.groups != new.groups,
    )
