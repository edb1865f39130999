"""Wire formats of the Kubernetes API that the simulator must reproduce byte for byte.

Why a module of its own: a client is only as good as the server it was tested against, so
the shapes a real API server uses live here in one place: `Status` error bodies (with
`reason`, `code`, `details.retryAfterSeconds`), opaque `continue` tokens (the same base64
JSON `{"v","rv","start"}` that apiserver's etcd3 storage encodes), watch event lines,
bookmark objects, resourceVersion parsing, JSON merge patch (RFC 7386) and JSON patch
(RFC 6902, applied by the `jsonpatch` library, with apiserver's status codes).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import jsonpatch
import jsonpointer
import orjson

REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
"""The `reason` apiserver puts in a Status for each HTTP code the simulator can answer."""

CONTINUE_TOO_OLD = (
    "The provided continue parameter is too old to display a consistent list result. You "
    "can start a new list without the continue parameter, or use the continue value from "
    "the response to get an inconsistent list."
)


class SimError(Exception):
    """An API error: becomes an HTTP response (or a watch ERROR event) with a Status body."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        retry_after: int | None = None,
        details: dict[str, Any] | None = None,
        continue_token: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.retry_after = retry_after
        self.details = details
        self.continue_token = continue_token

    def status(self) -> dict[str, Any]:
        """The `Status` object a real API server would send for this error."""
        meta: dict[str, Any] = {}
        if self.continue_token:
            meta["continue"] = self.continue_token
        body: dict[str, Any] = {
            "kind": "Status", "apiVersion": "v1", "metadata": meta, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        }
        details = dict(self.details or {})
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        if details:
            body["details"] = details
        return body

    def body(self) -> bytes:
        """The Status serialised."""
        return orjson.dumps(self.status())

    def headers(self) -> dict[str, str]:
        """`Retry-After` when the error carries one, as apiserver sets it."""
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


def not_found(namespace: str | None, name: str, plural: str = "pods",
              group: str = "") -> SimError:
    """A 404 for one object, worded like apiserver's (`deployments.apps "web" not found`)."""
    what = f"{plural}.{group}" if group else plural
    details: dict[str, Any] = {"name": name, "kind": plural}
    if group:
        details["group"] = group
    return SimError(404, f'{what} "{name}" not found', details=details)


def no_such_resource() -> SimError:
    """The 404 for a path that names no served resource (an absent API)."""
    return SimError(404, "the server could not find the requested resource")


def too_old(requested: int, oldest: int) -> SimError:
    """The 410 for a resourceVersion older than the retained history."""
    return SimError(410, f"too old resource version: {requested} ({oldest})")


def too_large(requested: int, current: int) -> SimError:
    """The 504 apiserver's watch cache answers for a resourceVersion it has not reached."""
    return SimError(
        504, f"Too large resource version: {requested}, current: {current}",
        reason="Timeout", retry_after=1,
        details={"causes": [{"reason": "ResourceVersionTooLarge",
                             "message": "Too large resource version"}]},
    )


def parse_rv(text: str | None, *, what: str = "resourceVersion") -> int | None:
    """None for absent/empty, else the non-negative integer; a 400 for anything else."""
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise SimError(400, f"invalid {what}: {text!r}") from None
    if value < 0:
        raise SimError(400, f"invalid {what}: {text!r}")
    return value


def encode_continue(rv: int, start: str) -> str:
    """An opaque continue token: base64url of `{"v","rv","start"}` as the etcd3 store makes."""
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_continue(token: str) -> tuple[int, str]:
    """(snapshot rv, start key) of a token; a 400 if it was not made by `encode_continue`."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        rv, start = data["rv"], data["start"]
        if data.get("v") != "meta.k8s.io/v1" or not isinstance(rv, int) or rv <= 0:
            raise ValueError("bad version")
        if not isinstance(start, str):
            raise ValueError("bad start")
    except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise SimError(400, f"continue key is not valid: {token[:64]!r}") from None
    return rv, start


EVENT_PREFIX: dict[str, bytes] = {
    t: b'{"type":"' + t.encode() + b'","object":'
    for t in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR")
}
EVENT_SUFFIX = b"}\n"


def event_line(kind: str, raw_object: bytes) -> bytes:
    """One newline-terminated watch event around an already-serialised object."""
    return EVENT_PREFIX[kind] + raw_object + EVENT_SUFFIX


def bookmark_line(rv: int, kind: str = "Pod", api_version: str = "v1", *,
                  initial_events_end: bool = False) -> bytes:
    """A BOOKMARK event: an empty object of the watched kind carrying only the
    resourceVersion (and, ending the initial events of a watch that asked for them, the
    `k8s.io/initial-events-end` annotation)."""
    meta = b'{"resourceVersion":"' + str(rv).encode() + b'"'
    if initial_events_end:
        meta += b',"annotations":{"k8s.io/initial-events-end":"true"}'
    return event_line("BOOKMARK", b'{"kind":"' + kind.encode() + b'","apiVersion":"'
                      + api_version.encode() + b'","metadata":' + meta + b"}}")


def error_line(error: SimError) -> bytes:
    """An ERROR event carrying a Status, as apiserver ends a watch it cannot continue."""
    return event_line("ERROR", error.body())


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, null deletes, the rest replace."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch; a malformed patch is a 400, one that cannot apply (a failed
    `test`, a missing path) a 422, as apiserver answers (kopf relies on the 422)."""
    try:
        patch = jsonpatch.JsonPatch(ops)
    except (jsonpatch.InvalidJsonPatch, TypeError, AttributeError) as exc:
        raise SimError(400, f"invalid JSON patch: {exc}") from None
    try:
        return patch.apply(target)
    except jsonpatch.InvalidJsonPatch as exc:
        raise SimError(400, f"invalid JSON patch: {exc}") from None
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, KeyError,
            IndexError, TypeError) as exc:
        raise SimError(422, f"the JSON patch could not be applied: {exc}") from None
