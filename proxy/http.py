"""The HTTP side (aiohttp): metrics, health, readiness, the JSON API and the admin API.

Everything is read-only except ``POST /api/v1/reload`` and ``PUT /api/v1/groups/{name}``,
which need the bearer token from ``[http] admin_token_file`` (compared in constant time)
and are disabled without one.
Responses are built from the live objects with msgspec, and never contain a password or
the token: pools are shown by name and URL (a Stratum URL carries no credentials), miners
by worker name.
"""

from __future__ import annotations

import hmac
import time
from collections import defaultdict
from typing import Protocol

import msgspec
from aiohttp import web

from proxy import __version__
from proxy.config import ConfigError, RouteConfig
from proxy.config_groups import routes_problem
from proxy.downstream import MinerServer
from proxy.metrics import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, Metrics
from proxy.routing.pools import PoolManager
from proxy.stats import WINDOWS, StatsRegistry
from proxy.views import group_view, group_views, pool_views

MAX_BODY_BYTES = 64 * 1024
"""Largest admin request body: 16 routes of pool names fit many times over."""


class ProxyView(Protocol):
    """What the HTTP side reads of the running proxy, and the one thing it asks of it."""

    server: MinerServer
    pools: PoolManager
    stats: StatsRegistry
    started_at: float
    config_path: str | None
    last_reload: dict[str, object] | None

    def clock(self) -> float:
        """The proxy's clock (the event loop's)."""

    def readiness(self) -> tuple[bool, str]:
        """Whether the proxy should get new miners, and why not."""

    async def reload(self) -> dict[str, object]:
        """Re-read and apply the config file."""


_JSON = msgspec.json.Encoder()


class WorkerView(msgspec.Struct):
    """One worker in ``/api/v1/workers``."""

    worker: str
    connections: int
    peers: list[str]
    difficulty: list[float]
    accepted: int
    rejected: dict[str, int]
    last_share: float | None
    hashrate_1m: float
    hashrate_15m: float


class StatusView(msgspec.Struct):
    """``/api/v1/status``."""

    version: str
    uptime_seconds: float
    config_file: str | None
    last_reload: dict[str, object] | None
    miners: int
    workers: int


class RoutesBody(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``PUT /api/v1/groups/{name}``: the TOML's routes, as JSON."""

    routes: list[RouteConfig]


_ROUTES_DECODER = msgspec.json.Decoder(RoutesBody)


def _json(payload: object, status: int = 200) -> web.Response:
    return web.Response(body=_JSON.encode(payload), status=status, content_type="application/json")


class HttpApi:
    """The aiohttp application of one running proxy."""

    def __init__(self, proxy: ProxyView, metrics: Metrics) -> None:
        self.proxy = proxy
        self.metrics = metrics
        self.app = web.Application()
        self.app.add_routes(
            [
                web.get("/metrics", self.handle_metrics),
                web.get("/healthz", self.handle_healthz),
                web.get("/readyz", self.handle_readyz),
                web.get("/api/v1/workers", self.handle_workers),
                web.get("/api/v1/pools", self.handle_pools),
                web.get("/api/v1/status", self.handle_status),
                web.get("/api/v1/groups", self.handle_groups),
                web.put("/api/v1/groups/{name}", self.handle_put_group),
                web.post("/api/v1/reload", self.handle_reload),
            ]
        )
        self.admin_token: bytes | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (port 0 picks one; see :attr:`port`)."""
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def rebind(self, address: tuple[str, int] | None) -> web.AppRunner | None:
        """Listen on ``address`` instead (None: not at all). The new site is bound first,
        so on OSError nothing changed; returns the old runner for the caller to clean up."""
        old = self._runner
        self._runner = None
        try:
            if address is not None:
                await self.start(*address)
        except OSError:
            self._runner = old
            raise
        return old

    async def stop(self) -> None:
        """Stop listening and close open requests."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ handlers

    async def handle_metrics(self, request: web.Request) -> web.Response:
        """Prometheus text format, or OpenMetrics when the scraper asks for it."""
        openmetrics = "application/openmetrics-text" in request.headers.get("Accept", "")
        body = await self.metrics.render(openmetrics=openmetrics)
        content_type = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def handle_healthz(self, request: web.Request) -> web.Response:
        """Liveness: the process serves HTTP."""
        return _json({"status": "ok"})

    async def handle_readyz(self, request: web.Request) -> web.Response:
        """Readiness: a pool is connected and authorized and its latest job is fresh."""
        ready, reason = self.proxy.readiness()
        return _json({"ready": ready, "reason": reason}, status=200 if ready else 503)

    async def handle_workers(self, request: web.Request) -> web.Response:
        """Every tracked worker with its counters and hashrate estimates."""
        difficulties: defaultdict[str, list[float]] = defaultdict(list)
        peers: defaultdict[str, list[str]] = defaultdict(list)
        for session in self.proxy.server.sessions:
            for name in session.workers:
                difficulties[name].append(session.vardiff.difficulty)
                peers[name].append(session.peer)  # the miner's real address behind a balancer
        offset = time.time() - self.proxy.clock()
        views = [
            WorkerView(
                worker=w.name,
                connections=w.connections,
                peers=peers.get(w.name, []),
                difficulty=difficulties.get(w.name, []),
                accepted=w.accepted,
                rejected=w.rejected_by_reason(),
                last_share=round(w.last_share + offset, 3) if w.last_share else None,
                hashrate_1m=w.hashrate[WINDOWS.index(60.0)],
                hashrate_15m=w.hashrate[WINDOWS.index(900.0)],
            )
            for w in self.proxy.stats.workers.values()
        ]
        return _json({"workers": views})

    async def handle_pools(self, request: web.Request) -> web.Response:
        """Every configured pool: state, layout, latency and verdict counts."""
        views = pool_views(self.proxy.pools, self.proxy.clock())
        return _json({"pools": views})

    async def handle_groups(self, request: web.Request) -> web.Response:
        """Every routing group: routes, weights, the pool serving each, realised split."""
        groups = self.proxy.pools.groups.groups
        return _json({"groups": group_views(groups, self.proxy.clock())})

    async def handle_put_group(self, request: web.Request) -> web.Response:
        """Replace a group's routes (admin): 200 with its new view; 400 with the reason
        and nothing changed; 404 for a group that does not exist; 413 for a body over
        :data:`MAX_BODY_BYTES`."""
        denied = self._check_admin(request)
        if denied is not None:
            return denied
        name = request.match_info["name"]
        too_big = _json({"error": f"body over {MAX_BODY_BYTES} bytes"}, status=413)
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return too_big
        body = bytearray()
        async for chunk in request.content.iter_chunked(16384):
            body += chunk
            if len(body) > MAX_BODY_BYTES:  # chunked, or a Content-Length that lied
                return too_big
        try:
            routes = _ROUTES_DECODER.decode(body).routes
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _json({"error": _body_error(exc)}, status=400)
        problem = routes_problem(routes, [p.name for p in self.proxy.pools.pools])
        if problem is not None:
            return _json({"error": problem}, status=400)
        who = f"api from {request.remote or '?'}"
        # Looked up after the body is read: a reload meanwhile may have removed the group.
        group = self.proxy.pools.set_routes(name, routes, who)
        if group is None:
            return _json({"error": f"no group {name!r}"}, status=404)
        return _json(group_view(group, self.proxy.clock()))

    async def handle_reload(self, request: web.Request) -> web.Response:
        """Reload the config file (admin): 200 with the changes, or 400 with the error."""
        denied = self._check_admin(request)
        if denied is not None:
            return denied
        result = await self.proxy.reload()
        return _json(result, status=200 if result["result"] == "success" else 400)

    def _check_admin(self, request: web.Request) -> web.Response | None:
        token = self.admin_token
        if token is None:
            return _json({"error": "admin API disabled: set [http] admin_token_file"}, status=403)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # compare_digest takes the same time wherever the first difference is; odd bytes in
        # the header (aiohttp hands them over surrogate-escaped) simply do not match.
        offered = given.strip().encode("utf-8", "surrogateescape")
        if scheme.lower() != "bearer" or not hmac.compare_digest(offered, token):
            response = _json({"error": "a valid bearer token is required"}, status=401)
            response.headers["WWW-Authenticate"] = 'Bearer realm="stratum-proxy"'
            return response
        return None

    async def handle_status(self, request: web.Request) -> web.Response:
        """Version, uptime, config file and the last reload's result."""
        proxy = self.proxy
        return _json(
            StatusView(
                version=__version__,
                uptime_seconds=round(proxy.clock() - proxy.started_at, 3),
                config_file=proxy.config_path,
                last_reload=proxy.last_reload,
                miners=len(proxy.server.sessions),
                workers=len(proxy.stats.workers),
            )
        )


def _body_error(exc: msgspec.DecodeError | msgspec.ValidationError) -> str:
    """One line saying what is wrong with a routes body, naming the field."""
    cause = exc.__cause__
    text = " ".join(str(exc).split())
    if isinstance(cause, ConfigError):
        # A route's own check (weight <= 0, no pools): msgspec names where, we name what.
        where = text.rpartition(" - at `$")[2].rstrip("`").lstrip(".")
        key = f"{where}.{cause.key}" if where and cause.key else where or cause.key
        return f"{key}: {cause.message}" if key else cause.message
    return text.replace("`$.", "`").replace("`$", "`body")
