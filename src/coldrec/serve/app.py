"""The HTTP API: FastAPI over the live Engine and the Store.

The read endpoints (/recommend, /search, /similar) are `async` and run on the event loop: their
work is a few milliseconds of CPU under the engine's lock, and handing each to the thread pool
cost more than the work (a 100k-item shop served 166 req/s that way, 272 on the loop). The writes
are sync functions, run in FastAPI's thread pool (they fsync, or encode new items); the store
commits every accepted write before the response is sent. Every read first applies the item
writes other server processes made (`CatalogSync`). Every 4xx body has the FastAPI shape
{"detail": [{"loc", "msg", "type", "field"}]}, where `field` is the offending input as a
path like `events[3].item_id`. Raw user and session ids never reach the logs: the access
log names the route template (`/users/{user_id}`), never the requested path.
"""

import logging
import math
import secrets
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pandas as pd
from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
)
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from coldrec.data.catalog import ItemCatalog
from coldrec.serve.settings import Settings
from coldrec.serve.store import Store, UnknownItemsError
from coldrec.serve.sync import CatalogSync

if TYPE_CHECKING:
    from coldrec.serve.engine import Engine

# no `from __future__ import annotations` here: FastAPI must see the batch models defined inside create_app
access_log = logging.getLogger("coldrec.serve.access")

Id = Annotated[str, Field(min_length=1, max_length=256)]
Text = Annotated[str, Field(max_length=10_000)]
Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Event(Strict):
    event_id: Id
    user_id: Id | None = None
    session_id: Id | None = None
    item_id: Id | None = Field(None, description="Required except for search events.")
    type: Literal["view", "click", "cart", "purchase", "search"]
    time: float | None = Field(None, ge=0, le=1e11, allow_inf_nan=False, description="Unix seconds; now when absent.")
    query: Annotated[str, Field(max_length=1000)] | None = None

    @model_validator(mode="after")
    def _who_and_what(self) -> "Event":
        if (self.user_id is None) == (self.session_id is None):
            raise ValueError("give exactly one of user_id and session_id")
        if self.item_id is None and self.type != "search":
            raise ValueError(f"item_id is required for {self.type} events")
        return self


class Item(Strict):
    item_id: Id
    title: Text = ""
    description: Text = ""
    brand: Annotated[str, Field(max_length=1000)] = ""
    category: Annotated[str, Field(max_length=1000, description='Path, levels joined by " > ".')] = ""
    price: Price | None = None
    available: bool = True
    created_at: datetime | None = None
    attributes: dict[Annotated[str, Field(max_length=200)], str | int | float | bool] | None = None

    @field_validator("created_at")
    @classmethod
    def _plausible_date(cls, value: datetime | None) -> datetime | None:
        if value is not None and not 1900 <= value.year <= 2200:
            raise ValueError("created_at must fall between the years 1900 and 2200")
        return value


class Profile(Strict):
    interests: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(max_length=100)


class Accepted(BaseModel):
    accepted: int
    duplicates: int


class Added(BaseModel):
    added: list[str]


class Erased(BaseModel):
    events: int
    profiles: int


class Recommended(BaseModel):
    item_id: str
    title: str
    score: float
    reason: str
    category: str
    price: float | None


class Results(BaseModel):
    items: list[Recommended]


def create_app(engine: "Engine", store: Store, settings: Settings) -> FastAPI:
    """The service over a fitted engine and the store; the engine first learns the store's item changes."""

    class EventBatch(Strict):
        events: list[Event] = Field(max_length=settings.max_batch)

    class ItemBatch(Strict):
        items: list[Item] = Field(max_length=settings.max_batch)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        engine.close()

    app = FastAPI(
        lifespan=lifespan,
        title="coldrec",
        version="0.1.0",
        description="Recommendations and search from a shopper's first visit.",
        responses={422: {"description": "Invalid input; `field` names it"}},
    )
    metrics = _Metrics(store)
    catalog = CatalogSync(engine, store)
    app.add_middleware(_Observe, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)  # FastAPI's subclass included
    api = APIRouter(dependencies=[Depends(_api_key_check(settings))])
    N = Annotated[int, Query(ge=1, le=settings.max_n, description=f"Results, 1..{settings.max_n}.")]
    ShopperId = Annotated[str | None, Query(min_length=1, max_length=256)]

    def shopper_context(user: str | None, session: str | None):
        events = store.user_event_columns(user, session)
        interests = store.profile(user) if user is not None else []
        return engine.context(events, interests, now=int(time.time()))

    @api.post("/events", response_model=Accepted, responses={413: {"description": "Request body too large"}})
    def post_events(batch: EventBatch) -> Accepted:
        """Record a batch of events, all or nothing; an event id seen before counts as a duplicate."""
        try:
            accepted, duplicates = store.add_events([event.model_dump() for event in batch.events])
        except UnknownItemsError as error:
            raise _invalid(
                [(("body", "events", i, "item_id"), f"unknown item id {item_id!r}", "unknown_item")
                 for i, item_id in zip(error.positions, error.item_ids)]
            ) from None
        metrics.events_accepted.inc(accepted)
        metrics.events_duplicate.inc(duplicates)
        return Accepted(accepted=accepted, duplicates=duplicates)

    @api.post("/items", response_model=Added)
    def post_items(batch: ItemBatch) -> Added:
        """Add or update products; they are encoded and recommendable when this returns."""
        if not batch.items:
            return Added(added=[])
        repeated = pd.Series([item.item_id for item in batch.items]).duplicated().to_numpy().nonzero()[0]
        if len(repeated):
            raise _invalid([(("body", "items", int(repeated[0]), "item_id"), "item id repeated in the batch", "duplicate")])
        frame = _items_frame(batch.items)
        store.upsert_items(frame)  # the store first: it is what a restart rebuilds from
        return Added(added=engine.add_items(frame))

    @api.delete("/items/{item_id}", responses={404: {"description": "Unknown item"}})
    def delete_item(item_id: Annotated[str, Path(max_length=256)]) -> dict[str, str]:
        """Remove a product from every result; it keeps its row, so nothing is renumbered."""
        if not store.delete_item(item_id):
            raise _not_found("item_id", item_id)
        engine.remove_item(item_id)
        return {"deleted": item_id}

    @api.put("/users/{user_id}/profile", response_model=Profile)
    def put_profile(user_id: Annotated[str, Path(max_length=256)], profile: Profile) -> Profile:
        """Onboarding: the interests a shopper states (category names or free text)."""
        store.set_profile(user_id, profile.interests)
        return profile

    @api.delete("/users/{user_id}", response_model=Erased)
    def delete_user(user_id: Annotated[str, Path(max_length=256)]) -> Erased:
        """Erase this user's events and profile."""
        return Erased(**store.delete_user(user_id))

    @api.get("/recommend", response_model=Results)
    async def recommend(
        user: ShopperId = None,
        session: ShopperId = None,
        n: N = 10,
        category: Annotated[str | None, Query(max_length=1000)] = None,
        min_price: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
        max_price: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
        in_stock: bool | None = None,
        include_bought: bool = False,
    ) -> Results:
        """Items for a user (events and profile), a session (its events), both, or nobody (a first visit)."""
        catalog.catch_up()
        context = shopper_context(user, session)
        found = engine.recommend(context, n, category=category, min_price=min_price, max_price=max_price,
                                 in_stock=in_stock, include_bought=include_bought)
        return _results(found)

    @api.get("/search", response_model=Results)
    async def search(
        q: Annotated[str, Query(min_length=1, max_length=500)],
        user: ShopperId = None,
        session: ShopperId = None,
        n: N = 10,
    ) -> Results:
        catalog.catch_up()
        context = shopper_context(user, session) if user is not None or session is not None else None
        return _results(engine.search(q, n, context=context))

    @api.get("/similar/{item_id}", response_model=Results, responses={404: {"description": "Unknown item"}})
    async def similar(item_id: Annotated[str, Path(max_length=256)], n: N = 10) -> Results:
        catalog.catch_up()
        if not engine.has_item(item_id):
            raise _not_found("item_id", item_id)
        try:
            return _results(engine.similar(item_id, n))
        except KeyError:  # deleted between the check and the lookup
            raise _not_found("item_id", item_id) from None

    @api.get("/categories")
    def categories() -> dict[str, list[str]]:
        """Leaf categories, for the demo page's interest picker."""
        catalog.catch_up()
        return {"categories": list(engine.categories())}

    app.include_router(api)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "items": store.item_count()}

    @app.get("/metrics", response_class=Response)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    _mount_demo(app, settings)
    return app


def _mount_demo(app: FastAPI, settings: Settings) -> None:
    """The demo page at / and its files at /static, when the folder exists."""
    index = settings.static_dir / "index.html"

    @app.get("/", include_in_schema=False)
    def home() -> Response:
        if index.is_file():
            return FileResponse(index)
        return JSONResponse({"service": "coldrec", "docs": "/docs", "demo": "not installed"})

    if settings.static_dir.is_dir():
        from fastapi.staticfiles import StaticFiles

        app.mount("/static", StaticFiles(directory=settings.static_dir), name="static")


def _items_frame(items: list[Item]):
    columns = {name: [getattr(item, name) for item in items] for name in Item.model_fields}
    columns["price"] = [math.nan if p is None else p for p in columns["price"]]
    columns["created_at"] = [None if t is None else _naive_utc(t) for t in columns["created_at"]]
    item_id = columns.pop("item_id")
    return ItemCatalog.from_records(item_id, **columns).frame


def _naive_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)


def _results(found) -> Results:
    """Engine results as JSON-safe rows: NaN prices and missing text never reach the encoder."""
    return Results(items=[
        Recommended(
            item_id=str(r.item_id),
            title=r.title if isinstance(r.title, str) else "",
            score=float(r.score) if math.isfinite(r.score) else 0.0,
            reason=r.reason if isinstance(r.reason, str) else "",
            category=r.category if isinstance(r.category, str) else "",
            price=float(r.price) if r.price is not None and math.isfinite(r.price) else None,
        )
        for r in found
    ])


# errors


def _field(loc) -> str:
    """("body", "events", 3, "item_id") -> "events[3].item_id"."""
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or (str(loc[0]) if loc else "")


def _error_body(errors: list[dict]) -> dict:
    return {"detail": [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"],
         "field": "body" if e["type"] == "json_invalid" else _field(e["loc"])}
        for e in errors
    ]}


def _invalid(errors: list[tuple[tuple, str, str]], status: int = 422) -> HTTPException:
    return HTTPException(status, [{"loc": loc, "msg": msg, "type": kind} for loc, msg, kind in errors])


def _not_found(name: str, value: str) -> HTTPException:
    return _invalid([(("path", name), f"unknown {name.replace('_', ' ')} {value!r}", "not_found")], status=404)


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    return JSONResponse(jsonable_encoder(_error_body(error.errors())), status_code=422)


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    if isinstance(error.detail, list):
        body = _error_body(error.detail)
    elif error.status_code == 400:  # FastAPI's "There was an error parsing the body" (e.g. not UTF-8)
        body = _error_body([{"loc": ("body",), "msg": str(error.detail), "type": "body_invalid"}])
    else:  # FastAPI's own (405, 404 for unknown routes)
        body = {"detail": error.detail}
    return JSONResponse(jsonable_encoder(body), status_code=error.status_code, headers=error.headers)


def _api_key_check(settings: Settings):
    expected = settings.api_key.get_secret_value().encode() if settings.api_key else None

    def check(x_api_key: Annotated[str | None, Header(description="Required when the service has an API key.")] = None):
        if expected is None:
            return
        if x_api_key is None or not secrets.compare_digest(x_api_key.encode(), expected):
            raise HTTPException(401, [{"loc": ("header", "X-API-Key"), "msg": "missing or wrong API key",
                                       "type": "unauthorized"}], headers={"WWW-Authenticate": "X-API-Key"})

    return check


# metrics and access log


class _Metrics:
    def __init__(self, store: Store):
        self.registry = CollectorRegistry()
        self.requests = Counter("coldrec_requests", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("coldrec_request_seconds", "Request latency", ["method", "route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.events_accepted = Counter("coldrec_events_accepted", "Events stored", registry=self.registry)
        self.events_duplicate = Counter("coldrec_events_duplicate", "Events ignored as already stored",
                                        registry=self.registry)
        items = Gauge("coldrec_items", "Items in the live catalog (not deleted)", registry=self.registry)
        items.set_function(store.item_count)


class _Observe:
    """ASGI middleware: request counts and latency per route template, the access log, and 413 for huge bodies."""

    def __init__(self, app, metrics: _Metrics, max_body_bytes: int):
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

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
            if self._too_large(scope):
                response = JSONResponse(
                    {"detail": [{"loc": ["body"], "msg": f"body over {self.max_body_bytes} bytes",
                                 "type": "too_large", "field": "body"}]}, status_code=413)
                await response(scope, receive, send_and_note)
            else:
                await self.app(scope, receive, send_and_note)
        finally:
            seconds = time.perf_counter() - started
            route = _route_name(scope)
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(seconds)
            access_log.info("%s %s %d %.1f ms", scope["method"], route, status, seconds * 1000)

    def _too_large(self, scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"content-length":
                return value.isdigit() and int(value) > self.max_body_bytes
        return False


def _route_name(scope) -> str:
    """The matched route's template, never the raw path (which may hold a user id)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path is None:
        return "/static" if scope.get("path", "").startswith("/static/") else "unmatched"
    return path
