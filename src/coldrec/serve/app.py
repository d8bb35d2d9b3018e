"""The HTTP API: FastAPI over the live Engine and the Store.

The read endpoints (/recommend, /search, /similar) are `async` and run on the event loop: their
work is a few milliseconds of CPU under the engine's lock, and handing each to the thread pool
cost more than the work (a 100k-item shop served 166 req/s that way, 272 on the loop). The writes
are sync functions, run in FastAPI's thread pool (they fsync, or encode new items outside the
engine's lock); the store commits every accepted write before the response is sent. Every read
first applies the item writes other server processes made (`CatalogSync`). Every 4xx body has
the shape of `coldrec.serve.errors`; unknown query parameters and body fields are refused.

A service over a versions folder (`coldrec.model.versions`) switches to each new current version (a retrain,
a rollback) while it serves (`LiveEngine`): every handler takes the (engine, catalog) pair once, so one request
is answered by one engine; `/healthz` says which version is served.
"""

import asyncio
import contextlib
import gc
import math
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path as FilePath  # fastapi's Path is the path-parameter marker
from typing import TYPE_CHECKING, Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from coldrec.ads.auction import AdPolicy
from coldrec.ads.campaigns import Campaign, CampaignError
from coldrec.data.catalog import ItemCatalog
from coldrec.rank.rules import Rule
from coldrec.serve.access import require
from coldrec.serve.engine import MAX_HISTORY_EVENTS
from coldrec.serve.errors import http_error, invalid, not_found, validation_error
from coldrec.serve.observe import Metrics, Observe
from coldrec.serve.schemas import (
    Accepted,
    Added,
    CampaignIn,
    CampaignOut,
    CampaignPatch,
    Campaigns,
    Erased,
    Event,
    Exported,
    Item,
    ItemPatch,
    Profile,
    Rejected,
    Results,
    RuleIn,
    RuleOut,
    Rules,
    StoredItem,
    Strict,
)
from coldrec.serve.settings import Settings
from coldrec.serve.sponsored import Sponsored
from coldrec.serve.store import AnyStore, ErasurePending
from coldrec.serve.sync import LiveEngine, Served

if TYPE_CHECKING:
    from coldrec.model.versions import ModelVersions
    from coldrec.serve.engine import Engine

# no `from __future__ import annotations` here: FastAPI must see the batch models defined inside create_app

#: How long the read that finds other processes' item writes waits for them to be applied (then answers anyway).
CATCH_UP_WAIT_S = 0.2



def create_app(engine: "Engine", store: AnyStore, settings: Settings, versions: "ModelVersions | None" = None,
               version: int | None = None) -> FastAPI:
    """The service over a fitted engine and the store; the engine first learns the store's item changes. With
    `versions`, the folder `engine` was loaded from as version `version`: the service switches to each new
    current version."""
    class EventBatch(Strict):
        events: list[Event] = Field(max_length=settings.max_batch)

    class ItemBatch(Strict):
        items: list[Item] = Field(max_length=settings.max_batch)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        live.start()
        sponsored.start()
        yield
        sponsored.close()
        live.close()

    app = FastAPI(
        lifespan=lifespan,
        title="coldrec",
        version="0.1.0",
        description="Recommendations and search from a shopper's first visit.",
        responses={422: {"description": "Invalid input; `field` names it"}},
        docs_url=None,  # served below from a package: the default loads Swagger UI from a CDN (blank offline)
        redoc_url=None,
    )
    metrics = Metrics(store.item_count)
    live = LiveEngine(engine, store, versions, version)
    sponsored = Sponsored(store)
    app.state.live = live
    app.add_middleware(Observe, metrics=metrics, max_body_bytes=settings.max_body_bytes,
                       max_url_bytes=settings.max_url_bytes)
    # starlette types a handler as taking any Exception, though it passes only the class it was registered for
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]  # FastAPI's subclass too
    known = Depends(_known_query_parameters())
    reads = APIRouter(dependencies=[Depends(require(settings, "read")), known])
    writes = APIRouter(dependencies=[Depends(require(settings, "write")), known])
    N = Annotated[int, Query(ge=1, le=settings.max_n, description=f"Results, 1..{settings.max_n}.")]
    ShopperId = Annotated[str | None, Query(min_length=1, max_length=256)]
    IncludeUnavailable = Annotated[bool, Query(description="Also list items marked unavailable (out of stock).")]
    Ads = Annotated[bool, Query(description="false: no sponsored items in this list.")]
    # ids in `{name:path}` routes: an id holding "/" (sent as %2F) is reachable like any other
    PathId = Annotated[str, Path(max_length=256)]

    async def caught_up(served: Served) -> None:
        """Apply other processes' item writes, encoded in a thread, never on the event loop. The first read to find
        them waits up to CATCH_UP_WAIT_S (a few new items are in its answer); past that, it and every read until
        the catch-up ends answer from the engine as it is (a 1,000-item write elsewhere stalls nobody)."""
        if not served.catalog.behind():
            return
        future, first = served.catalog.catch_up_in_background()
        if first:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), CATCH_UP_WAIT_S)

    async def answer(served: Served, read, *args, **kwargs):
        """A read (the shopper's context included: it reads the engine's catalog too) on the event loop, or in the
        thread pool while a write holds the engine (the loop, and every other request, would otherwise wait for
        that write's swap)."""
        if served.engine.busy():
            return await run_in_threadpool(read, *args, **kwargs)
        return read(*args, **kwargs)

    def shopper_context(engine: "Engine", user: str | None, session: str | None):
        # the engine uses no more than its most recent MAX_HISTORY_EVENTS: older ones cost time, not quality
        events = store.user_event_columns(user, session, limit=MAX_HISTORY_EVENTS)
        interests = store.profile(user) if user is not None else []
        return engine.context(events, interests, now=int(time.time()))

    @writes.post("/events", response_model=Accepted, responses={413: {"description": "Request body too large"}})
    def post_events(batch: EventBatch) -> Accepted:
        """Record a batch of events. Each valid event is stored (an event id seen before counts as a duplicate);
        an event naming an unknown or deleted item is not, and is listed in `rejected` with its index, id and
        reason: resend only those, once fixed. A 422 means the batch itself is malformed and nothing was stored."""
        added = store.add_events([event.model_dump() for event in batch.events])
        metrics.events_accepted.inc(added.accepted)
        metrics.events_duplicate.inc(added.duplicates)
        metrics.events_rejected.inc(len(added.rejected))
        rejected = [Rejected(index=r.position, event_id=r.event_id, field=f"events[{r.position}].{r.field}",
                             reason=r.reason) for r in added.rejected]
        return Accepted(accepted=added.accepted, duplicates=added.duplicates, rejected=rejected)

    @writes.post("/items", response_model=Added)
    def post_items(batch: ItemBatch) -> Added:
        """Add products, or replace stored ones whole (PATCH /items/{id} changes single fields); they are encoded
        and recommendable when this returns."""
        if not batch.items:
            return Added(added=[])
        repeated = pd.Series([item.item_id for item in batch.items]).duplicated().to_numpy().nonzero()[0]
        if len(repeated):
            where = ("body", "items", int(repeated[0]), "item_id")
            raise invalid([(where, "item id repeated in the batch", "duplicate")])
        frame = _items_frame(batch.items)
        served = live.current
        encoded = served.engine.encode_items(frame)  # the slow part, before any write: reads go on meanwhile
        store.upsert_items(frame)  # the store before the engine: it is what a restart rebuilds from
        added = served.engine.add_items(frame, encoded=encoded)
        served.catalog.applied(store.written_items_version())
        return Added(added=added)

    @writes.patch("/items/{item_id:path}", response_model=StoredItem, responses={404: {"description": "Unknown item"}})
    def patch_item(item_id: PathId, patch: ItemPatch) -> StoredItem:
        """Change the given fields of one product; every other field keeps its value."""
        changes = patch.changes()
        if "created_at" in changes and changes["created_at"] is not None:
            changes["created_at"] = _naive_utc(changes["created_at"])
        served = live.current
        row = store.patch_item(item_id, changes)
        if row is None:
            raise not_found("item_id", item_id)
        served.engine.add_items(row)
        served.catalog.applied(store.written_items_version())
        return StoredItem.from_row(row.iloc[0])

    @writes.delete("/items/{item_id:path}", responses={404: {"description": "Unknown item"}})
    def delete_item(item_id: PathId) -> dict[str, str]:
        """Remove a product from every result; it keeps its row, so nothing is renumbered."""
        served = live.current
        if not store.delete_item(item_id):
            raise not_found("item_id", item_id)
        served.engine.remove_item(item_id)
        served.catalog.applied(store.written_items_version())
        return {"deleted": item_id}

    @writes.put("/users/{user_id:path}/profile", response_model=Profile)
    def put_profile(user_id: PathId, profile: Profile) -> Profile:
        """Onboarding: the interests a shopper states (category names or free text)."""
        store.set_profile(user_id, profile.interests)
        live.current.engine.prepare_texts(profile.interests)  # encoded here, in the thread pool, not by the next read
        return profile

    erasure_pending: dict[int | str, dict[str, Any]] = {
        503: {"description": "Erased from every answer, but a long read still holds old pages "
                             "of the store's files: repeat the DELETE after Retry-After seconds"}}

    @writes.delete("/users/{user_id:path}", response_model=Erased, responses=erasure_pending)
    def delete_user(user_id: PathId) -> Erased:
        """Erase this user's events and profile, from the store's files too."""
        return Erased(**_erased(lambda: store.delete_user(user_id), "user_id"))

    @writes.get("/users/{user_id:path}/export", response_model=Exported)
    def export_user(user_id: PathId) -> Exported:
        """Everything the store holds about this user (stated interests, every event), in one document: the
        counterpart of DELETE /users/{user_id}. An unknown user gets an empty document, as the store holds nothing
        about it."""
        return Exported(user_id=user_id, **store.export_user(user_id))

    @writes.delete("/sessions/{session_id:path}", response_model=Erased, responses=erasure_pending)
    def delete_session(session_id: PathId) -> Erased:
        """Erase an anonymous session's events, from the store's files too."""
        return Erased(profiles=0, **_erased(lambda: store.delete_session(session_id), "session_id"))

    rules_cache: dict[str, Any] = {"version": None, "rules": ()}

    def active_rules() -> tuple[Rule, ...]:
        """The store's rules, read again only when its rules_version moved (one indexed read a request)."""
        version = store.rules_version()
        if version != rules_cache["version"]:
            stored = store.rules()
            rules_cache["rules"] = tuple(Rule(**rule) for rule in stored)
            rules_cache["version"] = version
        return rules_cache["rules"]

    @writes.post("/rules", response_model=RuleOut, status_code=201)
    def post_rule(rule: RuleIn) -> RuleOut:
        """Add a merchandising rule: boost, bury, pin (one item to a position) or exclude an item, a category or
        a brand, optionally between starts_at and ends_at. It applies to /recommend from the next request on,
        on every host, and never brings back an unavailable, removed or filtered-out item."""
        problems = rule.problems()
        if rule.item_id is not None and not problems and store.item(rule.item_id) is None:
            problems.append(("item_id", f"unknown or deleted item {rule.item_id!r}"))
        if problems:
            raise invalid([(("body", field), message, "value_error") for field, message in problems])
        stored = rule.stored()
        rule_id = store.add_rule(stored)
        return RuleOut.of({"rule_id": rule_id, **stored}, time.time())

    @writes.get("/rules", response_model=Rules)
    def get_rules() -> Rules:
        """Every rule, oldest first, each saying whether it is active now."""
        now = time.time()
        return Rules(rules=[RuleOut.of(rule, now) for rule in store.rules()])

    @writes.delete("/rules/{rule_id}", responses={404: {"description": "Unknown rule"}})
    def delete_rule(rule_id: Annotated[str, Path(max_length=64)]) -> dict[str, str]:
        """Delete a rule: it applies to no answer from the next request on."""
        if not store.delete_rule(rule_id):
            raise not_found("rule_id", rule_id)
        return {"deleted": rule_id}

    def bidding(served: Served, wanted: bool) -> list[Campaign]:
        """The campaigns bidding for this request's sponsored slots (none for a model without a click model)."""
        if not wanted or served.engine.click_model is None or not settings.ad_positions:
            return []
        return sponsored.bidding()

    def ad_policy(served: Served) -> AdPolicy:
        click = served.engine.click_model
        if click is None:
            return settings.ad_policy()
        return settings.ad_policy(click.floor_, click.reserve_)

    def ad_tokens(found) -> dict[int, str]:
        now = time.time()
        return {at: sponsored.token(r.campaign_id, r.item_id, r.cost_per_click, now)
                for at, r in enumerate(found) if r.campaign_id is not None}

    def campaign_out(campaign: Campaign) -> CampaignOut:
        return CampaignOut.of(campaign, store.campaign_stats(campaign.campaign_id), time.time())

    def campaign_error(error: CampaignError):
        field = {"start": "starts_at", "end": "ends_at"}.get(error.field, error.field)
        return invalid([(("body", *field.replace("]", "").split("[")), error.message, "value_error")])

    @writes.post("/campaigns", response_model=CampaignOut, status_code=201)
    def post_campaign(campaign: CampaignIn) -> CampaignOut:
        """Start a sponsored-products campaign: its items compete for the sponsored slots of /recommend and /search
        from the next second on, on every host, by click probability x bid."""
        try:
            stored = store.add_campaign(Campaign.from_dict(campaign.values()))
        except CampaignError as error:
            raise campaign_error(error) from None
        return campaign_out(stored)

    @writes.get("/campaigns", response_model=Campaigns)
    def get_campaigns() -> Campaigns:
        return Campaigns(campaigns=[campaign_out(c) for c in store.campaigns()])

    @writes.get("/campaigns/{campaign_id}", response_model=CampaignOut,
                responses={404: {"description": "Unknown campaign"}})
    def get_campaign(campaign_id: Annotated[str, Path(max_length=64)]) -> CampaignOut:
        """A campaign with its impressions, clicks, spend and what is left of today's budget."""
        campaign = store.campaign(campaign_id)
        if campaign is None:
            raise not_found("campaign_id", campaign_id)
        return campaign_out(campaign)

    @writes.patch("/campaigns/{campaign_id}", response_model=CampaignOut,
                  responses={404: {"description": "Unknown campaign"}})
    def patch_campaign(campaign_id: Annotated[str, Path(max_length=64)], patch: CampaignPatch) -> CampaignOut:
        """Pause or resume a campaign, or change its bid, budget, end or targeting."""
        try:
            changed = store.update_campaign(campaign_id, patch.changes())
        except CampaignError as error:
            raise campaign_error(error) from None
        if changed is None:
            raise not_found("campaign_id", campaign_id)
        return campaign_out(changed)

    @reads.get("/recommend", response_model=Results)
    async def recommend(
        user: ShopperId = None,
        session: ShopperId = None,
        n: N = 10,
        category: Annotated[str | None, Query(max_length=1000)] = None,
        min_price: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
        max_price: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
        in_stock: Annotated[bool | None, Query(description="true: available items only (the default); "
                                                           "false: unavailable ones only.")] = None,
        include_unavailable: IncludeUnavailable = False,
        include_bought: bool = False,
        diversity: Annotated[float | None, Query(ge=0, le=1, allow_inf_nan=False, description=(
            "How diverse the list is, 0 (the ranking as it is) to 1; default: the shop's own strength."))] = None,
        ads: Ads = True,
    ) -> Results:
        """Items for a user (events and profile), a session (its events), both, or nobody (a first visit)."""
        served = live.current
        await caught_up(served)
        rules = active_rules()

        campaigns = bidding(served, ads)

        def read():
            return served.engine.recommend(shopper_context(served.engine, user, session), n, category=category,
                                           min_price=min_price, max_price=max_price, in_stock=in_stock,
                                           include_bought=include_bought, include_unavailable=include_unavailable,
                                           diversity=diversity, rules=rules, campaigns=campaigns,
                                           ad_policy=ad_policy(served))

        found = await answer(served, read)
        return Results.of(found, ad_tokens(found))

    @reads.get("/search", response_model=Results)
    async def search(
        q: Annotated[str, Query(min_length=1, max_length=500, description="Not blank.")],
        user: ShopperId = None,
        session: ShopperId = None,
        n: N = 10,
        include_unavailable: IncludeUnavailable = False,
        ads: Ads = True,
    ) -> Results:
        """Products matching the query ("matches your search"), or close to it in meaning ("related to your
        search"); an empty list when nothing is close. Personalised by a user's or session's history."""
        if not q.strip():
            raise invalid([(("query", "q"), "the query is blank", "blank")])
        served = live.current
        await caught_up(served)

        campaigns = bidding(served, ads)

        def read():
            context = (shopper_context(served.engine, user, session)
                       if user is not None or session is not None else None)
            return served.engine.search(q, n, context=context, include_unavailable=include_unavailable,
                                        campaigns=campaigns, ad_policy=ad_policy(served))

        try:
            found = await answer(served, read)
            return Results.of(found, ad_tokens(found))
        except ValueError as error:  # a query with nothing left to search for once cleaned
            raise invalid([(("query", "q"), str(error), "blank")]) from None

    @reads.get("/similar/{item_id:path}", response_model=Results, responses={404: {"description": "Unknown item"}})
    async def similar(item_id: PathId, n: N = 10, include_unavailable: IncludeUnavailable = False) -> Results:
        served = live.current
        await caught_up(served)
        if not served.engine.has_item(item_id):
            raise not_found("item_id", item_id)
        try:
            return Results.of(await answer(served, served.engine.similar, item_id, n,
                                           include_unavailable=include_unavailable))
        except KeyError:  # deleted between the check and the lookup
            raise not_found("item_id", item_id) from None

    @reads.get("/categories")
    def categories() -> dict[str, list[str]]:
        """Leaf categories, for the demo page's interest picker."""
        served = live.current
        served.catalog.catch_up()
        return {"categories": list(served.engine.categories())}

    app.include_router(reads)
    app.include_router(writes)

    @app.get("/healthz", dependencies=[known])
    async def healthz() -> dict[str, Any]:
        # on the event loop, as the reads: a probe must not queue behind writes in the thread pool
        # privacy: what the served model's aggregates spent per retrain (epsilon, delta, contribution bound);
        # null when they are exact counts
        return {"status": "ok", "items": store.item_count(), "model_version": live.current.version,
                "privacy": getattr(live.current.engine, "privacy", None)}

    @app.get("/metrics", response_class=Response, dependencies=[known])
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    _mount_docs(app)
    _mount_demo(app, settings)
    return app


def freeze_startup_objects() -> None:
    """For a server process, once its app is built: the engine's start-up objects never become garbage, so they
    are kept out of the collector's full passes, which otherwise scan them all (60-70 ms pauses seen during a
    1,000-item POST /items on Office)."""
    gc.collect()
    gc.freeze()


def _erased(erase, name: str) -> dict[str, int]:
    try:
        return erase()
    except ErasurePending:
        message = ("erased from every answer, but a long read still holds old copies in the store's files: "
                   "repeat this DELETE")
        raise invalid([(("path", name), message, "erasure_pending")], status=503,
                      headers={"Retry-After": "5"}) from None


def _known_query_parameters():
    """A dependency refusing query parameters the route does not declare (a typo must not be ignored)."""
    declared: dict[int, set[str]] = {}

    def names(dependant) -> set[str]:
        found = {field.alias for field in dependant.query_params}
        for sub in dependant.dependencies:
            found |= names(sub)
        return found

    def check(request: Request) -> None:
        route = request.scope.get("route")
        dependant = getattr(route, "dependant", None)
        if not isinstance(dependant, Dependant):
            return
        allowed = declared.get(id(route))
        if allowed is None:
            allowed = declared[id(route)] = names(dependant)
        unknown = [name for name in dict.fromkeys(request.query_params.keys()) if name not in allowed]
        if unknown:
            hint = f"; this endpoint takes {', '.join(sorted(allowed))}" if allowed else "; this endpoint takes none"
            raise invalid([(("query", name), f"unknown query parameter {name!r}{hint}", "extra_forbidden")
                           for name in unknown])

    return check


def _mount_docs(app: FastAPI) -> None:
    """/docs with Swagger UI's files from the swagger-ui-bundle package (works offline), and /favicon.ico."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")
    favicon = FilePath(__file__).resolve().parent / "static" / "favicon.ico"

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="coldrec API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css", swagger_favicon_url="/favicon.ico")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon_ico() -> Response:
        return FileResponse(favicon, media_type="image/x-icon")


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

