"""ASGI middleware around the app: request counts and latency per route template, the access log,
and the size limits (a 413 for a body past the limit however it is sent, a 414 for a long URL).

Raw user and session ids never reach the logs: the access log names the route template
(`/users/{user_id}`), never the requested path.
"""

import logging
import time

from fastapi import HTTPException
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from coldrec.serve.errors import error_response

access_log = logging.getLogger("coldrec.serve.access")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self, item_count):
        self.registry = CollectorRegistry()
        self.requests = Counter("coldrec_requests", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("coldrec_request_seconds", "Request latency", ["method", "route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.events_accepted = Counter("coldrec_events_accepted", "Events stored", registry=self.registry)
        self.events_duplicate = Counter("coldrec_events_duplicate", "Events ignored as already stored",
                                        registry=self.registry)
        self.events_rejected = Counter("coldrec_events_rejected", "Events refused from accepted batches",
                                       registry=self.registry)
        items = Gauge("coldrec_items", "Items in the live catalog (not deleted)", registry=self.registry)
        items.set_function(item_count)


class Observe:
    def __init__(self, app, metrics: Metrics, max_body_bytes: int, max_url_bytes: int):
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.max_url_bytes = max_url_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") > self.max_url_bytes:
                await error_response(414, ("url",), f"path and query over {self.max_url_bytes} bytes",
                                     "too_long")(scope, receive, send_and_note)
            elif self._declared_too_large(scope):
                await self._too_large()(scope, receive, send_and_note)
            else:
                await self.app(scope, self._counting(receive), send_and_note)
        finally:
            seconds = time.perf_counter() - started
            route = _route_name(scope)
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(seconds)
            access_log.info("%s %s %d %.1f ms", scope["method"], route, status, seconds * 1000)

    def _too_large(self):
        return error_response(413, ("body",), self._too_large_message, "too_large")

    @property
    def _too_large_message(self) -> str:
        return f"body over {self.max_body_bytes} bytes"

    def _declared_too_large(self, scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"content-length":
                return value.isdigit() and int(value) > self.max_body_bytes
        return False

    def _counting(self, receive):
        """`receive` that stops a body (chunked, or longer than its Content-Length) once it passes the limit.

        The HTTPException reaches FastAPI's body parsing, which passes HTTPExceptions on, so the client gets
        the same 413 as for a declared size, and the rest of the body is never read into memory.
        """
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise HTTPException(413, [{"loc": ("body",), "msg": self._too_large_message, "type": "too_large"}])
            return message

        return counted


def _route_name(scope) -> str:
    """The matched route's template, never the raw path (which may hold a user id)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path is None:
        return "/static" if scope.get("path", "").startswith("/static/") else "unmatched"
    return path.replace(":path}", "}")
