"""One logical bk-cmdb call: auth headers, pacing, the envelope, error classes, retries, metrics.

Everything the typed API methods share lives here, so each of them is only "build the body,
call, read `data`". A call:

1. takes a token from the per-bk-cmdb bucket (`ratelimit`);
2. sends the JSON body with the dialect's headers — gateway: `X-Bkapi-Authorization`
   `{"bk_app_code", "bk_app_secret", "bk_username"}`; direct: `BK_User` and
   `HTTP_BLUEKING_SUPPLIER_ID`;
3. reads the envelope in either dialect (`code`/`message` or `bk_error_code`/`bk_error_msg`,
   since a 3.12 behind the gateway does not rename them) and returns `data` on success;
4. otherwise raises the class `errors.classify` picks, and retries transient ones with full-
   jitter exponential backoff, never waiting less than the server's `Retry-After` (or the
   gateway's `X-Bkapi-RateLimit-Reset`), up to `max_attempts`;
5. reports every attempt to the observer as (endpoint name, outcome, seconds), and counts it
   in the innermost `counting()` block of the calling task (a context variable, so pushes of
   several clusters sharing one client each count their own requests).

A create whose connection breaks after it was sent is not retried: it raises
`AmbiguousWriteError`, and the caller re-lists to learn whether it happened (a blind retry
would answer 1199014 for a create that did happen, or double a create that has no unique key).
Reads and deletes are idempotent, so a broken connection there is retried like a 5xx.

Secrets: the auth header is built once and only handed to httpx; no log line or exception
carries headers, and the settings' `repr()` hides the secret.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, Self

import httpx
import orjson

from .errors import (
    AmbiguousWriteError,
    AuthError,
    BkCmdbError,
    DuplicateError,
    RateLimitedError,
    RejectedError,
    ServerError,
    TransientError,
    UnreachableError,
    classify,
)
from .ratelimit import Clock, Sleep, TokenBucket, loop_clock
from .settings import BkCmdbSettings

log = logging.getLogger("synchronizer.bkcmdb")
BODY_SNIPPET = 200
"""Characters of a non-JSON answer kept in an error message (proxies answer HTML pages)."""
OUTCOMES: dict[type[BkCmdbError], str] = {
    DuplicateError: "duplicate", RateLimitedError: "rate_limited", ServerError: "server_error",
    UnreachableError: "unreachable", AmbiguousWriteError: "ambiguous", AuthError: "auth",
    RejectedError: "rejected",
}
"""The `status` label of each outcome: a small fixed set, never a URL or an id."""


@dataclass(slots=True)
class RequestCount:
    """Attempts sent to bk-cmdb inside one `counting()` block."""

    requests: int = 0


_COUNT: ContextVar[RequestCount | None] = ContextVar("bkcmdb_request_count", default=None)


@contextmanager
def counting() -> Iterator[RequestCount]:
    """Count the attempts this task (and tasks it starts) sends while the block runs."""
    count = RequestCount()
    token = _COUNT.set(count)
    try:
        yield count
    finally:
        _COUNT.reset(token)


class RequestObserver(Protocol):
    """Told about every attempt; the product maps it onto its Prometheus metrics."""

    def __call__(self, endpoint: str, status: str, duration: float) -> None:
        """One attempt at `endpoint` ended with `status` after `duration` seconds."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A bk-cmdb route: its gateway name (the metrics label), method and path template."""

    name: str
    method: str
    path: str

    def url(self, base: str, params: Mapping[str, object]) -> str:
        """The absolute URL with `{kind}`/`{biz}` filled in."""
        return base.rstrip("/") + self.path.format(**params)


def _retry_after(response: httpx.Response) -> float | None:
    for header in ("Retry-After", "X-Bkapi-RateLimit-Reset"):
        text = response.headers.get(header)
        if not text:
            continue
        try:
            return max(0.0, float(text))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            continue
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return None


class Transport:
    """Sends bk-cmdb calls for one settings object over one httpx client."""

    def __init__(self, settings: BkCmdbSettings, *, client: httpx.AsyncClient | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 observer: RequestObserver | None = None, clock: Clock = loop_clock,
                 sleep: Sleep = asyncio.sleep, rng: random.Random | None = None) -> None:
        if client is not None and transport is not None:
            raise ValueError("pass either an httpx client or a transport, not both")
        self.settings = settings
        self._owned = client is None
        self._client = client or httpx.AsyncClient(transport=transport,
                                                    timeout=settings.timeout)
        self._observer = observer
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.bucket = TokenBucket(settings.rate, settings.burst, clock=clock, sleep=sleep)
        self._headers = self._auth_headers(settings)

    def __repr__(self) -> str:
        return f"<bk-cmdb transport {self.settings.url} auth={self.settings.auth}>"

    @staticmethod
    def _auth_headers(settings: BkCmdbSettings) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if settings.auth == "gateway":
            headers["X-Bkapi-Authorization"] = orjson.dumps({
                "bk_app_code": settings.app_code, "bk_app_secret": settings.app_secret,
                "bk_username": settings.username}).decode()
        else:
            headers["BK_User"] = settings.username
            headers["HTTP_BLUEKING_SUPPLIER_ID"] = settings.supplier_account
        return headers

    def backoff(self, attempt: int, *, floor: float | None = None) -> float:
        """Full-jitter delay before retry number `attempt` (1-based), at least `floor`."""
        initial, maximum = self.settings.backoff_initial, self.settings.backoff_max
        ceiling = min(maximum, initial * (2 ** min(attempt - 1, 30)))
        delay = self._rng.uniform(min(initial / 2, ceiling), ceiling)
        return max(delay, floor or 0.0)

    async def call(self, endpoint: Endpoint, body: Mapping[str, Any], *,
                   params: Mapping[str, object] | None = None, write: bool = False) -> Any:
        """Send one request (retrying transient failures) and return the answer's `data`.

        `write` marks a create: a connection lost after sending it is ambiguous, not retried.
        """
        url = endpoint.url(self.settings.url, params or {})
        content = orjson.dumps(body)
        attempt = 0
        while True:
            attempt += 1
            await self.bucket.acquire()
            start = self._clock()
            try:
                data = await self._once(endpoint, url, content, write)
            except BkCmdbError as exc:
                self._observe(endpoint, OUTCOMES.get(type(exc), "error"), start)
                if not isinstance(exc, TransientError) or isinstance(exc, AmbiguousWriteError) \
                        or attempt >= self.settings.max_attempts:
                    raise
                floor = exc.retry_after if isinstance(exc, RateLimitedError) else None
                delay = self.backoff(attempt, floor=floor)
                log.warning("%s; retry %d/%d in %.2fs", exc, attempt,
                            self.settings.max_attempts - 1, delay)
                await self._sleep(delay)
                continue
            self._observe(endpoint, "success", start)
            return data

    def _observe(self, endpoint: Endpoint, status: str, start: float) -> None:
        count = _COUNT.get()
        if count is not None:
            count.requests += 1
        duration = max(0.0, self._clock() - start)
        log.debug("bk-cmdb %s: %s in %.3fs", endpoint.name, status, duration)
        if self._observer is not None:
            self._observer(endpoint.name, status, duration)

    async def _once(self, endpoint: Endpoint, url: str, content: bytes, write: bool) -> Any:
        name = endpoint.name
        try:
            response = await self._client.request(endpoint.method, url, content=content,
                                                  headers=self._headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise UnreachableError(name, f"cannot connect: {type(exc).__name__}: {exc}") from None
        except httpx.TransportError as exc:
            text = f"connection lost before the answer: {type(exc).__name__}: {exc}"
            if write:
                raise AmbiguousWriteError(name, text + " (the write may have been applied)") \
                    from None
            raise UnreachableError(name, text) from None
        status = response.status_code
        try:
            payload = orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError:
            payload = None
        if isinstance(payload, dict) and "result" in payload:
            code = payload.get("code", payload.get("bk_error_code"))
            message = payload.get("message", payload.get("bk_error_msg")) or ""
            if payload["result"] is True and status < 400 and code in (0, None):
                return payload.get("data")
            raise classify(name, code=code if isinstance(code, int) else None,
                           message=str(message), http_status=status,
                           retry_after=_retry_after(response))
        snippet = response.text[:BODY_SNIPPET] if response.content else ""
        raise classify(name, code=None, http_status=status, retry_after=_retry_after(response),
                       message=snippet or response.reason_phrase or "answer without a body")

    async def aclose(self) -> None:
        """Close the httpx client if this transport made it."""
        if self._owned:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

