"""The consolidation API (``/consolidation``): photo-interpretation tasks, contributions, their review and
the recette. Routes and bodies: ``services/consolidation/API.md``.

Reads are public like everything the platform serves; every write goes through :meth:`Guard.write`:
authenticated (401), authorised by role (403), CSRF-checked when it rides on the session cookie (403),
rate-limited (429), its body bounded while it is read (413) and validated (422 naming the field) — all
before the store is touched, so a refused write changes nothing. The store calls are blocking (SQLite or
PostgreSQL) and run in the thread pool.
"""

from __future__ import annotations

import hmac
import math
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import shapely
from fastapi import FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ocsge.consolidation.model import (
    Conflict,
    ConsolidationError,
    Contribution,
    ContributionStatus,
    Forbidden,
    InvalidInput,
    NotFound,
    Polygon,
    PreviousPolygon,
    Role,
    Task,
    TaskStatus,
    Unauthenticated,
    Window,
)
from ocsge.consolidation.store import ConsolidationStore, now, window_id
from ocsge.consolidation.windows import open_window
from ocsge.errors import OcsgeError
from ocsge.storage import Storage
from ocsge.territory import departement
from services.consolidation import bodies
from services.consolidation.auth import Authenticator, Principal
from services.consolidation.geojson import collection, parse_geometry, split_polygon, to_feature
from services.consolidation.limits import RateLimiter, parse_json, read_body
from services.consolidation.settings import ConsolidationSettings, get_consolidation_settings, store_dsn
from services.errors import add_error_handlers

# path parameters (module level: the routes' annotations are resolved from here)
_NO_CONTROL = r"^[^\x00-\x1f\x7f]+$"  # ids in a URL: no NUL (PostgreSQL text refuses it), no control character
Dep = Annotated[str, PathParam(min_length=1, max_length=8, pattern=_NO_CONTROL)]
Year = Annotated[int, PathParam(ge=2016, le=2026)]
TaskId = Annotated[str, PathParam(min_length=1, max_length=64, pattern=_NO_CONTROL)]
ItemId = Annotated[str, PathParam(min_length=1, max_length=64, pattern=_NO_CONTROL)]

COOKIE = "ocsge_session"
CSRF_HEADER = "X-CSRF-Token"
Model = TypeVar("Model", bound=BaseModel)
T = TypeVar("T")


class StoreUnavailable(ConsolidationError):
    """No store can be opened (an S3 storage root and no PostgreSQL DSN)."""

    status = 503
    public_detail = "the consolidation store is not configured on this server (OCSGE_CONSOLIDATION_DSN)"


ERROR_STATUSES: dict[type[BaseException], int] = {
    StoreUnavailable: 503,
    InvalidInput: 422,
    NotFound: 404,
    Conflict: 409,
    Unauthenticated: 401,
    Forbidden: 403,
    ConsolidationError: 400,
}


@dataclass
class Guard:
    """Authentication, authorisation, CSRF, rate and size limits of the writes."""

    auth: Authenticator
    settings: ConsolidationSettings
    writes: RateLimiter  # per account
    writes_ip: RateLimiter  # per client address
    logins: RateLimiter  # per client address

    def _token(self, request: Request) -> tuple[str | None, bool]:
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            return header[7:].strip(), False
        return request.cookies.get(COOKIE), True

    async def principal(self, request: Request) -> Principal:
        token, from_cookie = self._token(request)
        if not token:
            raise Unauthenticated(
                "authentication required: log in (POST /consolidation/auth/login) or send Authorization: Bearer <token>"
            )
        who = await run_in_threadpool(self.auth.verify, token)
        if from_cookie and request.method not in ("GET", "HEAD", "OPTIONS"):
            sent = request.headers.get(CSRF_HEADER, "")
            if not who.csrf or not hmac.compare_digest(sent.encode(), who.csrf.encode()):
                raise Forbidden(
                    f"{CSRF_HEADER} header missing or wrong (writes with the session cookie need the "
                    "csrf_token of the login answer)"
                )
        return who

    async def write(
        self, request: Request, role: Role, model: type[Model] | None = None
    ) -> tuple[Principal, Model | None]:
        who = await self.principal(request)
        if who.role < role:
            raise Forbidden(f"this needs the {role.label} role; {who.username} is {who.role.label}")
        self.writes.hit(f"account:{who.username}")
        self.writes_ip.hit(f"ip:{_client(request)}")
        if model is None:
            return who, None
        return who, parse_json(await read_body(request, self.settings.max_body_bytes), model)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _window_of(store: ConsolidationStore, dep: str, millesime: int) -> Window:
    try:
        code = departement(dep).code
    except OcsgeError:
        raise NotFound(f"unknown département {dep!r}") from None
    return store.get_window(window_id(code, millesime))


def _check_open(window: Window) -> None:
    if date.fromisoformat(window.closes) < datetime.now(UTC).date():
        raise Conflict(f"the consolidation window {window.id} closed on {window.closes}")


# --- GeoJSON of rows ---------------------------------------------------------------------------------


def window_json(w: Window) -> dict[str, Any]:
    return {
        "id": w.id,
        "departement": w.departement,
        "millesime": w.millesime,
        "previous_millesime": w.previous_millesime,
        "opens": w.opens,
        "closes": w.closes,
        "tasks": w.tasks,
        "polygons": w.polygons,
        "grid": w.grid_key,
        "auto": w.auto_key,
        "previous": w.previous_key,
        "epsg": w.epsg,
        "bbox": _lonlat_bbox(w),
    }


def _lonlat_bbox(w: Window) -> list[float]:
    from services.consolidation.geojson import reproject

    b = reproject(shapely.box(*w.bbox), w.epsg, 4326).bounds
    return [round(v, 7) for v in b]


def task_properties(t: Task) -> dict[str, Any]:
    return {
        "id": t.id,
        "status": str(t.status),
        "assignee": t.assignee,
        "version": t.version,
        "changed_area_m2": t.changed_area_m2,
        "sampled": t.sampled,
        "done_by": t.done_by,
        "checked_by": t.checked_by,
        "agree": t.agree,
    }


def task_feature(t: Task, epsg: int) -> dict[str, Any]:
    return to_feature(shapely.from_wkb(t.wkb), epsg, task_properties(t), t.id)


def polygon_feature(p: Polygon, epsg: int) -> dict[str, Any]:
    return to_feature(
        shapely.from_wkb(p.wkb),
        epsg,
        {"id": p.id, "code_cs": p.code_cs, "code_us": p.code_us, "version": p.version, "provenance": str(p.provenance)},
        p.id,
    )


def previous_feature(p: PreviousPolygon, epsg: int) -> dict[str, Any]:
    return to_feature(shapely.from_wkb(p.wkb), epsg, {"id": p.id, "code_cs": p.code_cs, "code_us": p.code_us}, p.id)


def contribution_feature(c: Contribution, epsg: int) -> dict[str, Any]:
    return to_feature(
        shapely.from_wkb(c.wkb),
        epsg,
        {
            "id": c.id,
            "status": str(c.status),
            "code_cs": c.code_cs,
            "code_us": c.code_us,
            "comment": c.comment,
            "author": c.author,
            "created": c.created,
            "reviewer": c.reviewer,
            "reviewed_at": c.reviewed_at,
            "reason": c.reason,
            "version": c.version,
        },
        c.id,
    )


# A polygon belongs to a cell when it covers more of it than this: a neighbour that only touches the cell's
# edge, or overlaps it by the sliver a reprojected drawn line leaves, does not.
MIN_OVERLAP_M2 = 0.01


def in_cell(geom: shapely.Geometry, cell: shapely.Geometry) -> bool:
    return bool(geom.intersects(cell)) and shapely.area(shapely.intersection(geom, cell)) > MIN_OVERLAP_M2


def _bbox(geom: shapely.Geometry) -> tuple[float, float, float, float]:
    b = geom.bounds
    return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))


# --- the app -----------------------------------------------------------------------------------------


def create_consolidation_app(
    store: ConsolidationStore,
    storage: Storage,
    settings: ConsolidationSettings | None = None,
    secret_path: str | Path | None = None,
) -> FastAPI:
    settings = settings or get_consolidation_settings()
    if secret_path is None:
        secret_path = settings.secret_file or Path(storage.root) / "consolidation" / "jwt-secret"
    auth = Authenticator(store, settings, Path(secret_path))
    guard = Guard(
        auth,
        settings,
        RateLimiter(settings.writes_per_minute),
        RateLimiter(settings.writes_per_minute_ip),
        RateLimiter(settings.logins_per_minute),
    )
    app = FastAPI(title="OCS GE consolidation", docs_url=None, openapi_url="/openapi.json", redoc_url=None)
    app.state.store = store
    app.state.guard = guard
    add_error_handlers(app, extra=ERROR_STATUSES)

    async def run(fn: Callable[..., T], *args: Any) -> T:
        return await run_in_threadpool(fn, *args)

    @app.get("/")
    def index() -> dict[str, Any]:
        return {
            "title": "OCS GE consolidation",
            "windows": "windows",
            "login": "auth/login",
            "me": "me",
            "documentation": "services/consolidation/API.md",
        }

    # auth ---------------------------------------------------------------------------------------------

    @app.post("/auth/login")
    async def login(request: Request) -> JSONResponse:
        guard.logins.hit(f"login-ip:{_client(request)}", what="login attempts")
        body = parse_json(await read_body(request, 16 * 1024), bodies.Login)
        token, claims, account = await run(auth.login, body.username, body.password)
        response = JSONResponse(
            {
                "access_token": token,
                "token_type": "bearer",
                "role": account.role.label,
                "username": account.username,
                "csrf_token": claims["csrf"],
                "expires_in": claims["exp"] - claims["iat"],
            }
        )
        response.set_cookie(
            COOKIE,
            token,
            max_age=claims["exp"] - claims["iat"],
            path="/consolidation",
            httponly=True,
            samesite="strict",
            secure=settings.cookie_secure,
        )
        return response

    @app.post("/auth/logout", status_code=204)
    async def logout(request: Request) -> Response:
        who = await guard.principal(request)
        if who.jti and who.via == "local":
            await run(store.revoke, who.jti, who.expires, who.username)
        response = Response(status_code=204)
        response.delete_cookie(
            COOKIE, path="/consolidation", httponly=True, samesite="strict", secure=settings.cookie_secure
        )
        return response

    @app.get("/me")
    async def me(request: Request) -> dict[str, Any]:
        who = await guard.principal(request)
        return {"username": who.username, "role": who.role.label, "via": who.via}

    # windows ------------------------------------------------------------------------------------------

    @app.post("/windows", status_code=201)
    async def create_window(request: Request) -> dict[str, Any]:
        who, body = await guard.write(request, Role.ADMIN, bodies.OpenWindow)
        assert body is not None
        window = await run(
            open_window,
            store,
            storage,
            body.departement,
            body.millesime,
            body.previous_millesime,
            body.closes,
            who.username,
        )
        return window_json(window)

    @app.get("/windows")
    async def windows() -> dict[str, Any]:
        return {"windows": [window_json(w) for w in await run(store.list_windows)]}

    # tasks --------------------------------------------------------------------------------------------

    @app.get("/{dep}/{millesime}/tasks")
    async def tasks(dep: Dep, millesime: Year, status: Annotated[TaskStatus | None, Query()] = None) -> JSONResponse:
        window = await run(_window_of, store, dep, millesime)
        rows = await run(store.list_tasks, window.id, status)
        return JSONResponse(collection(task_feature(t, window.epsg) for t in rows), media_type="application/geo+json")

    def task_detail(window: Window, task_id: str) -> dict[str, Any]:
        task = store.get_task(window.id, task_id)
        cell = shapely.from_wkb(task.wkb)
        bbox = _bbox(cell)

        def inside(wkb: bytes) -> bool:
            return in_cell(shapely.from_wkb(wkb), cell)

        polygons = [p for p in store.polygons_in(window.id, bbox) if inside(p.wkb)]
        previous = [p for p in store.previous_in(window.id, bbox) if inside(p.wkb)]
        return {
            "task": task_feature(task, window.epsg),
            "polygons": collection(polygon_feature(p, window.epsg) for p in polygons),
            "previous": collection(previous_feature(p, window.epsg) for p in previous),
        }

    @app.get("/{dep}/{millesime}/tasks/{task_id}")
    async def task(dep: Dep, millesime: Year, task_id: TaskId) -> dict[str, Any]:
        window = await run(_window_of, store, dep, millesime)
        return await run(task_detail, window, task_id)

    def edit(window: Window, task_id: str, body: bodies.Edit, actor: str) -> dict[str, Any]:
        _check_open(window)
        change = body.root
        task = store.get_task(window.id, task_id)
        cell = shapely.from_wkb(task.wkb)
        polygon = store.get_polygon(window.id, change.polygon_id)
        geom = shapely.from_wkb(polygon.wkb)
        if not in_cell(geom, cell):
            raise InvalidInput("polygon_id", f"polygon {change.polygon_id} is not in task {task_id}")
        if isinstance(change, bodies.Reclassify):
            task, changed = store.reclassify(
                window.id, task_id, change.polygon_id, change.version, change.code_cs, change.code_us, actor
            )
        else:
            line = parse_geometry(
                change.line,
                ("LineString",),
                param="line",
                max_vertices=settings.max_vertices,
                epsg=window.epsg,
                territory=window.bbox,
            )
            parts = split_polygon(geom, line)
            task, changed = store.split(
                window.id,
                task_id,
                change.polygon_id,
                change.version,
                [(shapely.to_wkb(p), _bbox(p), c.code_cs, c.code_us) for p, c in zip(parts, change.codes, strict=True)],
                actor,
            )
        return {"task": task_properties(task), "polygons": collection(polygon_feature(p, window.epsg) for p in changed)}

    @app.post("/{dep}/{millesime}/tasks/{task_id}/edits")
    async def edits(request: Request, dep: Dep, millesime: Year, task_id: TaskId) -> dict[str, Any]:
        who, body = await guard.write(request, Role.INTERPRETER, bodies.Edit)
        window = await run(_window_of, store, dep, millesime)
        return await run(edit, window, task_id, body, who.username)

    @app.post("/{dep}/{millesime}/tasks/{task_id}/done")
    async def done(request: Request, dep: Dep, millesime: Year, task_id: TaskId) -> dict[str, Any]:
        who, body = await guard.write(request, Role.INTERPRETER, bodies.Versioned)
        window = await run(_window_of, store, dep, millesime)
        _check_open(window)
        task = await run(store.mark_done, window.id, task_id, body.version, who.username)  # type: ignore[union-attr]
        return task_properties(task)

    @app.get("/{dep}/{millesime}/progress")
    async def progress(dep: Dep, millesime: Year) -> dict[str, Any]:
        window = await run(_window_of, store, dep, millesime)
        return await run(store.progress, window.id)

    @app.get("/{dep}/{millesime}/audit")
    async def audit(
        request: Request, dep: Dep, millesime: Year, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000
    ) -> dict[str, Any]:
        """The window's audit log (who, when, what, before/after), for reviewers: it names every writer."""
        who = await guard.principal(request)
        if who.role < Role.REVIEWER:
            raise Forbidden(f"the audit log needs the reviewer role; {who.username} is {who.role.label}")
        window = await run(_window_of, store, dep, millesime)
        return {"window": window.id, "entries": await run(store.audit_log, window.id, limit)}

    # recette ------------------------------------------------------------------------------------------

    @app.post("/{dep}/{millesime}/recette/sample")
    async def sample(request: Request, dep: Dep, millesime: Year) -> dict[str, Any]:
        who, body = await guard.write(request, Role.REVIEWER, bodies.Sample)
        assert body is not None
        if (body.count is None) == (body.rate is None):
            raise InvalidInput("count", "give either count or rate")
        window = await run(_window_of, store, dep, millesime)

        def draw() -> list[str]:
            count = body.count
            if count is None:
                done_tasks = len(store.list_tasks(window.id, TaskStatus.DONE))
                count = max(1, math.ceil(done_tasks * float(body.rate or 0)))
            return store.sample(window.id, count, body.seed, who.username)

        return {"sampled": await run(draw)}

    @app.post("/{dep}/{millesime}/tasks/{task_id}/check")
    async def check(request: Request, dep: Dep, millesime: Year, task_id: TaskId) -> dict[str, Any]:
        who, body = await guard.write(request, Role.INTERPRETER, bodies.Check)
        assert body is not None
        window = await run(_window_of, store, dep, millesime)
        task = await run(store.check, window.id, task_id, body.version, body.agree, body.comment, who.username)
        return task_properties(task)

    # contributions ------------------------------------------------------------------------------------

    @app.post("/{dep}/{millesime}/contributions", status_code=201)
    async def contribute(request: Request, dep: Dep, millesime: Year) -> dict[str, Any]:
        who, body = await guard.write(request, Role.CONTRIBUTOR, bodies.NewContribution)
        assert body is not None
        window = await run(_window_of, store, dep, millesime)
        _check_open(window)
        geom = parse_geometry(
            body.geometry,
            ("Point", "Polygon"),
            param="geometry",
            max_vertices=settings.max_vertices,
            epsg=window.epsg,
            territory=window.bbox,
        )
        c = Contribution(
            uuid.uuid4().hex,
            window.id,
            shapely.to_wkb(geom),
            body.code_cs,
            body.code_us,
            body.comment,
            ContributionStatus.SUBMITTED,
            who.username,
            now(),
        )
        c = await run(store.add_contribution, c, _bbox(geom))
        return contribution_feature(c, window.epsg)["properties"] | {
            "geometry": contribution_feature(c, window.epsg)["geometry"]
        }

    @app.get("/{dep}/{millesime}/contributions")
    async def contributions(
        dep: Dep, millesime: Year, status: Annotated[ContributionStatus | None, Query()] = None
    ) -> JSONResponse:
        window = await run(_window_of, store, dep, millesime)
        rows = await run(store.list_contributions, window.id, status)
        return JSONResponse(
            collection(contribution_feature(c, window.epsg) for c in rows), media_type="application/geo+json"
        )

    @app.post("/{dep}/{millesime}/contributions/{contribution_id}/review")
    async def review(
        request: Request,
        dep: Dep,
        millesime: Year,
        contribution_id: ItemId,
    ) -> dict[str, Any]:
        who, body = await guard.write(request, Role.REVIEWER, bodies.Review)
        assert body is not None
        window = await run(_window_of, store, dep, millesime)
        c = await run(
            store.review,
            window.id,
            contribution_id,
            ContributionStatus(body.status),
            body.reason,
            body.version,
            who.username,
        )
        return contribution_feature(c, window.epsg)["properties"]

    return app


class LazyStore:
    """The store, opened on first use: mounting the API creates no file, and a server whose storage cannot
    hold the embedded store (an S3 root without ``OCSGE_CONSOLIDATION_DSN``) still serves everything else —
    its consolidation routes answer 503."""

    def __init__(self, factory: Callable[[], ConsolidationStore]) -> None:
        self._factory = factory
        self._store: ConsolidationStore | None = None
        self._lock = threading.Lock()

    def _get(self) -> ConsolidationStore:
        with self._lock:
            if self._store is None:
                try:
                    self._store = self._factory()
                except InvalidInput as exc:
                    raise StoreUnavailable(str(exc)) from exc
            return self._store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)


def create_app_for_storage(storage: Storage, settings: ConsolidationSettings | None = None) -> FastAPI:
    """The app over the configured store (PostgreSQL DSN, else SQLite under the storage root), opened lazily."""
    from ocsge.consolidation.store import open_store

    settings = settings or get_consolidation_settings()
    resolved = settings
    store = LazyStore(lambda: open_store(store_dsn(resolved), storage.root))
    return create_consolidation_app(store, storage, settings)  # type: ignore[arg-type]


def create_app_from_settings(storage_root: str | None = None) -> FastAPI:
    from ocsge.settings import get_settings
    from ocsge.storage import open_storage

    return create_app_for_storage(open_storage(storage_root or get_settings().storage_root))
