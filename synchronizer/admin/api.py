"""The admin API's HTTP face: routes, bearer-token authentication, body limits.

Served on `port` next to /status, and only when `instance.admin_token` is set (no token,
no routes: 404). Every call needs `Authorization: Bearer <admin_token>`: none (or another
scheme) is 401 with a `WWW-Authenticate` challenge, a wrong one 403. The comparison is
constant-time (`hmac.compare_digest`), and no answer ever contains the token or the
header. The token is checked before the body is read, so an unauthenticated caller
cannot make the instance read a megabyte.

Bodies larger than `MAX_BODY` (1 MB) are refused with 413 as soon as the limit is
crossed (or at once from Content-Length), never buffered whole. Errors are JSON: `error`
(one line) or `errors` (a list: validation and verification report every problem).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from .service import Outcome, TopologyService

log = logging.getLogger(__name__)

MAX_BODY = 1_000_000
"""Bytes of a request body ("bodies over 1 MB: 413")."""
PREFIX = "/v1/topologies"
REALM = 'Bearer realm="bkcmdb-synchronizer admin API"'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(status: int, body: dict[str, object], **headers: str) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body),
                        content_type="application/json", headers=headers or None)


def _answer(outcome: Outcome) -> web.Response:
    return _json(outcome.status, outcome.body)


class TooLarge(Exception):
    """The body crossed `MAX_BODY`."""


async def read_body(request: web.Request) -> bytes:
    """The request body, refused (`TooLarge`) past `MAX_BODY` bytes."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def admin_routes(token: str, service: TopologyService) -> list[web.RouteDef]:
    """The `/v1/topologies` routes, each behind the bearer token."""
    expected = token.encode()

    def guarded(handler: Handler) -> Handler:
        async def serve(request: web.Request) -> web.StreamResponse:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not given.strip():
                return _json(401, {"error": "the admin API needs Authorization: Bearer"
                                            " <instance.admin_token>"},
                             **{"WWW-Authenticate": REALM})
            if not hmac.compare_digest(given.strip().encode(), expected):
                return _json(403, {"error": "the bearer token is not the admin token"})
            try:
                return await handler(request)
            except TooLarge:
                return _json(413, {"error": f"the body is larger than {MAX_BODY} bytes"})
            except LookupError as exc:  # the CMDB is not connected yet
                return _json(503, {"error": str(exc).splitlines()[0]})
            except Exception as exc:  # a store error: one line, never a traceback to a client
                log.warning("admin API %s %s failed: %s", request.method, request.path,
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                return _json(503, {"error": f"{type(exc).__name__}: "
                                            f"{str(exc).splitlines()[0] if str(exc) else ''}"})
        return serve

    async def put(request: web.Request) -> web.StreamResponse:
        body = await read_body(request)
        return _answer(await service.put(request.match_info["name"], body))

    async def get_one(request: web.Request) -> web.StreamResponse:
        return _answer(await service.get(request.match_info["name"]))

    async def get_all(request: web.Request) -> web.StreamResponse:
        return _answer(await service.list())

    async def delete(request: web.Request) -> web.StreamResponse:
        return _answer(await service.delete(request.match_info["name"]))

    return [
        web.put(PREFIX + "/{name}", guarded(put)),
        web.get(PREFIX + "/{name}", guarded(get_one)),
        web.delete(PREFIX + "/{name}", guarded(delete)),
        web.get(PREFIX, guarded(get_all)),
    ]
