"""Every 4xx as {"detail": [{"loc", "msg", "type", "field"}]}, `field` naming the offending input
as a path like `events[3].item_id`."""

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


def field_name(loc) -> str:
    """("body", "events", 3, "item_id") -> "events[3].item_id"."""
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or (str(loc[0]) if loc else "")


def error_body(errors: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"detail": [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"],
         "field": "body" if e["type"] == "json_invalid" else field_name(e["loc"])}
        for e in errors
    ]}


def invalid(errors: list[tuple[tuple, str, str]], status: int = 422, headers: dict | None = None) -> HTTPException:
    return HTTPException(status, [{"loc": loc, "msg": msg, "type": kind} for loc, msg, kind in errors], headers=headers)


def not_found(name: str, value: str) -> HTTPException:
    return invalid([(("path", name), f"unknown {name.replace('_', ' ')} {value!r}", "not_found")], status=404)


def error_response(status: int, loc: tuple, msg: str, kind: str) -> JSONResponse:
    """An error answered outside FastAPI's handlers (middleware): the same shape."""
    return JSONResponse(error_body([{"loc": loc, "msg": msg, "type": kind}]), status_code=status)


async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    return JSONResponse(jsonable_encoder(error_body(error.errors())), status_code=422)


async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    if isinstance(error.detail, list):
        body = error_body(error.detail)
    elif error.status_code == 400:  # FastAPI's "There was an error parsing the body" (e.g. not UTF-8)
        body = error_body([{"loc": ("body",), "msg": str(error.detail), "type": "body_invalid"}])
    else:  # Starlette's own (405, 404 for unknown routes)
        body = {"detail": error.detail}
    return JSONResponse(jsonable_encoder(body), status_code=error.status_code, headers=error.headers)
