"""Prometheus metrics, fed by call events, an event-loop lag probe and HTTP middleware.

Each daemon owns its registry (no process globals), so tests can run several.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from voxd.call.events import (
    CallEnded,
    CallEvent,
    CallStarted,
    DtmfReceived,
    EngineError,
    ToolExecuted,
    TurnCompleted,
)

LATENCY_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.active_calls = Gauge("voxd_active_calls", "Calls in progress", ["transport", "agent"], registry=r)
        self.calls_total = Counter("voxd_calls_total", "Calls ended, by end reason", ["transport", "end_reason"], registry=r)
        self.turn_latency = Histogram(
            "voxd_turn_latency_seconds", "End of caller speech to first bot audio", buckets=LATENCY_BUCKETS, registry=r)
        self.stage = Histogram(
            "voxd_turn_stage_seconds", "Reply stages: endpoint (speech end to turn end), then from turn end: "
            "transcript, first_token, first_audio", ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.barge_in = Histogram(
            "voxd_barge_in_seconds", "Caller speech onset to bot audio stopped", buckets=FAST_BUCKETS, registry=r)
        self.interruptions = Counter("voxd_interruptions_total", "Bot turns interrupted by the caller", registry=r)
        self.provider_errors = Counter("voxd_provider_errors_total", "Engine failures", ["role", "provider"], registry=r)
        self.dtmf = Counter("voxd_dtmf_digits_total", "Keypad digits received", ["source"], registry=r)
        self.tools = Counter("voxd_function_calls_total", "Function executions", ["name", "outcome"], registry=r)
        self.loop_lag = Histogram(
            "voxd_event_loop_lag_seconds", "How late a 50 ms timer fires", buckets=FAST_BUCKETS, registry=r)
        self.http = Counter("voxd_http_requests_total", "HTTP requests", ["route", "method", "status"], registry=r)
        self.rtp_packets = Counter("voxd_rtp_packets_total", "RTP packets", ["direction"], registry=r)
        self.rtp_lost = Counter("voxd_rtp_packets_lost_total", "RTP packets lost (receive side)", registry=r)
        self.rtp_jitter = Histogram("voxd_rtp_jitter_seconds", "Interarrival jitter at call end", buckets=FAST_BUCKETS, registry=r)
        self.rtp_round_trip = Histogram(
            "voxd_rtp_round_trip_seconds", "RTP round-trip time from the peer's last RTCP report (RFC 3550 LSR/DLSR), at call end",
            buckets=FAST_BUCKETS, registry=r)
        self.webhook_attempts = Counter(
            "voxd_webhook_attempts_total", "Webhook delivery attempts by result and the delivery's new status",
            ["result", "status"], registry=r)
        self.webhook_depth = Gauge("voxd_webhook_outbox_depth", "Webhook deliveries waiting to be sent", registry=r)
        self.redis_up = Gauge("voxd_redis_up", "1 while the shared rate limits' Redis answers (redis.url)", registry=r)
        self.ratelimit_fallbacks = Counter(
            "voxd_ratelimit_fallback_total", "Rate-limit decisions taken locally because Redis was down", registry=r)
        self.mos = Histogram("voxd_call_mos", "Post-call analysis: E-model MOS of the call's audio path (RTP calls)",
                             ["agent"], buckets=(1.0, 2.0, 2.5, 3.0, 3.5, 3.8, 4.0, 4.2, 4.3, 4.4, 4.5), registry=r)
        self.sentiment = Histogram("voxd_call_sentiment", "Post-call analysis: the caller's overall sentiment (-1..1)",
                                   ["agent"], buckets=(-0.75, -0.5, -0.25, -0.05, 0.05, 0.25, 0.5, 0.75, 1.0),
                                   registry=r)
        self.outcomes = Counter("voxd_call_outcomes_total", "Post-call analysis: calls by outcome",
                                ["agent", "outcome"], registry=r)
        self.before_scrape: list[Callable[[], Awaitable[None]]] = []  # refresh gauges read from elsewhere
        self._lag_task: asyncio.Task[None] | None = None

    # -- call events
    def on_call_event(self, ev: CallEvent) -> None:
        if isinstance(ev, CallStarted):
            self.active_calls.labels(ev.record.transport, ev.record.agent).inc()
        elif isinstance(ev, CallEnded):
            rec = ev.record
            self.active_calls.labels(rec.transport, rec.agent).dec()
            self.calls_total.labels(rec.transport, rec.end_reason or "unknown").inc()
            rtp = rec.metadata.get("rtp")
            if isinstance(rtp, dict):
                self.rtp_packets.labels("in").inc(rtp.get("received", 0))
                self.rtp_packets.labels("out").inc(rtp.get("sent", 0))
                self.rtp_lost.inc(max(0, rtp.get("lost", 0)))
                self.rtp_jitter.observe(rtp.get("jitter_ms", 0.0) / 1000)
                rtcp = rtp.get("rtcp")
                rtt = rtcp.get("peer", {}).get("rtt_ms") if isinstance(rtcp, dict) else None
                if isinstance(rtt, int | float):
                    self.rtp_round_trip.observe(rtt / 1000)
        elif isinstance(ev, TurnCompleted):
            t = ev.turn
            if t.speaker != "bot":
                return
            if t.interrupted:
                self.interruptions.inc()
            if t.barge_in_ms is not None:
                self.barge_in.observe(t.barge_in_ms / 1000)
            la = t.latency
            if la is not None:
                for stage in ("endpoint", "transcript", "first_token", "first_audio"):
                    v = getattr(la, f"{stage}_ms")
                    if v is not None:
                        self.stage.labels(stage).observe(v / 1000)
                if la.first_audio_ms is not None:
                    self.turn_latency.observe(((la.endpoint_ms or 0) + la.first_audio_ms) / 1000)
        elif isinstance(ev, DtmfReceived):
            self.dtmf.labels(ev.dtmf.source).inc()
        elif isinstance(ev, ToolExecuted):
            self.tools.labels(ev.tool.name, "error" if ev.tool.error else "ok").inc()
        elif isinstance(ev, EngineError):
            self.provider_errors.labels(ev.role, str(ev.detail.get("provider", ""))).inc()

    # -- event loop lag
    def on_analysis(self, agent: str, analysis: dict[str, object]) -> None:
        """A call's post-call analysis was stored."""
        quality, sentiment = analysis.get("quality"), analysis.get("sentiment")
        mos = quality.get("mos") if isinstance(quality, dict) else None
        overall = sentiment.get("overall") if isinstance(sentiment, dict) else None
        if isinstance(mos, int | float):
            self.mos.labels(agent).observe(mos)
        if isinstance(overall, int | float):
            self.sentiment.labels(agent).observe(overall)
        self.outcomes.labels(agent, str(analysis.get("outcome") or "none")).inc()

    def start_lag_probe(self, period_s: float = 0.05) -> None:
        async def probe() -> None:
            loop = asyncio.get_running_loop()
            while True:
                t0 = loop.time()
                await asyncio.sleep(period_s)
                self.loop_lag.observe(max(0.0, loop.time() - t0 - period_s))

        self._lag_task = asyncio.create_task(probe(), name="loop-lag-probe")

    async def stop(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            try:
                await self._lag_task
            except asyncio.CancelledError:
                pass

    # -- HTTP
    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            self.http.labels(route, request.method, str(status)).inc()

    def on_webhook_attempt(self, delivery: object, result: object, status: str) -> None:
        code = getattr(result, "status_code", None)
        ok = bool(getattr(result, "ok", False))
        label = "ok" if ok else ("gone" if code == 410 else ("http_error" if code else "network_error"))
        self.webhook_attempts.labels(label, status).inc()

    async def handle(self, request: web.Request) -> web.Response:
        for refresh in self.before_scrape:
            try:
                await refresh()
            except Exception:  # a broken source must not break the scrape
                pass
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


