"""HTTP answers from an API server mapped onto the engine's errors, and a reachability probe.

Every message is one line that names the cluster, because it ends up in a log line, in
/status and in `check-config --connect` output; a Status body's `message` is quoted,
truncated, and nothing from the request (its Authorization header) ever is.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
import orjson

from reconciler import Expired, Refused, SourceUnavailable

from .connection import ClusterEndpoint, KubeConfigError, client_kwargs, connect

PROBE_PATH = "/api/v1/pods"
"""What `probe` lists (one item): the resource every synced cluster is read for."""
EXCERPT = 160
"""Characters of an offending line or object quoted in a log line."""


class AccessDenied(Refused):
    """The API server refused our credentials (401) or their rights (403)."""


class Absent(Refused):
    """The API server does not serve this resource (404: an API the cluster lacks)."""


def excerpt(data: bytes | str) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.replace("\n", " ")
    return text if len(text) <= EXCERPT else text[:EXCERPT] + f"... ({len(text)} chars)"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def retry_after(value: str | None, *, now: Callable[[], datetime] = _utcnow) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now()).total_seconds())


def _status_message(body: bytes) -> str:
    """The `message` of a Kubernetes Status body, else an excerpt of the body."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return excerpt(body) if body else ""
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        return excerpt(doc["message"])
    return excerpt(body)


def http_error(
    cluster: str, what: str, response: httpx.Response, body: bytes,
    *, now: Callable[[], datetime] = _utcnow,
) -> Exception:
    """The engine error for a non-200 answer; the message is one line naming the cluster."""
    code = response.status_code
    detail = _status_message(body)
    msg = f"cluster {cluster}: {what}: HTTP {code} {response.reason_phrase}"
    if detail:
        msg += f": {detail}"
    if code == 410:
        return Expired(msg)
    after = retry_after(response.headers.get("Retry-After"), now=now)
    if code in (401, 403):
        return AccessDenied(msg, retry_after=after)
    if code == 404:
        return Absent(msg, retry_after=after)
    return SourceUnavailable(msg, retry_after=after)


def transport_error(cluster: str, what: str, exc: Exception) -> SourceUnavailable:
    """A failed exchange (network, TLS, protocol, credentials) as a one-line retryable error."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return SourceUnavailable(
        f"cluster {cluster}: {what}: {type(exc).__name__}" + (f": {detail}" if detail else "")
    )


async def probe(endpoint: ClusterEndpoint, *, request_timeout: float = 10.0) -> None:
    """Reach the cluster and list one Pod; raise a one-line error if that fails.

    Raises `KubeConfigError` (unusable settings), `AccessDenied` (401/403) or
    `SourceUnavailable` (unreachable, not an API server, other HTTP errors).
    """
    creds = await connect(endpoint)
    kwargs = client_kwargs(creds, timeout=httpx.Timeout(request_timeout))
    async with httpx.AsyncClient(**kwargs) as c:
        try:
            response = await c.get(PROBE_PATH, params={"limit": "1"})
            body = await response.aread()
        except (httpx.HTTPError, KubeConfigError) as exc:
            raise transport_error(endpoint.id, f"cannot reach {creds.base_url}", exc) from None
    if response.status_code != 200:
        raise http_error(endpoint.id, f"GET {creds.base_url}{PROBE_PATH}", response, body)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict) or "items" not in doc:
        raise SourceUnavailable(
            f"cluster {endpoint.id}: {creds.base_url} does not answer like a Kubernetes API"
            f" server: {excerpt(body)}"
        )

