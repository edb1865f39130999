"""HTTP answers from an API server mapped onto the engine's errors.

Every message is one line that names the cluster, because it ends up in a log line, in
/status and in `check-config --connect` output; a Status body's `message` is quoted,
truncated, and nothing from the request (its Authorization header) ever is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import orjson

from reconciler import Expired, Refused, SourceUnavailable

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


def too_large(status: object) -> bool:
    """A Status saying a resourceVersion is ahead of the server ("Too large resource
    version"): after the cluster was rebuilt or its etcd restored, the version we resume
    from is in its future. client-go's reflector relists then; so do we (`Expired`), and
    the full sync notices the versions went backwards."""
    if not isinstance(status, dict):
        return False
    details = status.get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    if isinstance(causes, list) and any(
            isinstance(c, dict) and c.get("reason") == "ResourceVersionTooLarge" for c in causes):
        return True
    message = status.get("message")
    return isinstance(message, str) and message.startswith("Too large resource version")


def http_error(
    cluster: str, what: str, code: int, reason: str, headers: Mapping[str, str], body: bytes,
    *, now: Callable[[], datetime] = _utcnow,
) -> Exception:
    """The engine error for a non-200 answer; the message is one line naming the cluster."""
    detail = _status_message(body)
    msg = f"cluster {cluster}: {what}: HTTP {code} {reason}"
    if detail:
        msg += f": {detail}"
    if code == 410:
        return Expired(msg)
    if code == 504 and body:
        try:
            if too_large(orjson.loads(body)):
                return Expired(msg)
        except orjson.JSONDecodeError:
            pass
    after = retry_after(headers.get("Retry-After"), now=now)
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
