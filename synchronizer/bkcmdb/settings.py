"""How to reach one bk-cmdb: address, dialect, credentials, pacing, retries, batch size.

A frozen value the client is built from; the product's settings loader (not this package)
fills it from the config file's `bkcmdb:` block. The app secret is a secret: it is excluded
from `repr()` (so it cannot reach a log line through a settings dump) and only ever leaves
the process inside the `X-Bkapi-Authorization` header.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from . import codes

Api = Literal["kube", "container"]
Auth = Literal["gateway", "direct"]

DEFAULT_RATE = 20.0
"""Requests per second per bk-cmdb: a fifth of the gateway's default 100/s per resource, so
several instances and other callers still fit under it."""
DEFAULT_BURST = 20
DEFAULT_TIMEOUT = 30.0
"""Seconds per request; the gateway's own backend timeout is 30 s (`proxy_http.timeout`)."""
DEFAULT_ATTEMPTS = 5
DEFAULT_BACKOFF = (0.5, 30.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class BkCmdbSettings:
    """One bk-cmdb endpoint and how to talk to it."""

    url: str
    """Base URL; `/api/v3/...` is appended (the gateway stage URL, or the apiserver)."""
    api: Api = "kube"
    auth: Auth = "gateway"
    app_code: str = ""
    app_secret: str = field(default="", repr=False)
    username: str = "admin"
    supplier_account: str = "0"
    batch_size: int = 200
    """Objects per write request; each type's own bk-cmdb limit still caps it."""
    rate: float = DEFAULT_RATE
    """Requests per second (token bucket refill)."""
    burst: int = DEFAULT_BURST
    """Requests that may go at once after a quiet spell (token bucket size)."""
    timeout: float = DEFAULT_TIMEOUT
    max_attempts: int = DEFAULT_ATTEMPTS
    """Tries per request for transient failures (1 = no retry)."""
    backoff_initial: float = DEFAULT_BACKOFF[0]
    backoff_max: float = DEFAULT_BACKOFF[1]

    def __post_init__(self) -> None:
        problems = []
        if not self.url.startswith(("http://", "https://")):
            problems.append(f"url must start with http:// or https://, got {self.url!r}")
        if self.api not in ("kube", "container"):
            problems.append(f"api must be kube or container, got {self.api!r}")
        if self.auth not in ("gateway", "direct"):
            problems.append(f"auth must be gateway or direct, got {self.auth!r}")
        if self.auth == "gateway" and not self.app_code:
            problems.append("auth gateway needs app_code")
        if not 1 <= self.batch_size <= codes.MAX_PODS:
            problems.append(f"batch_size must be 1..{codes.MAX_PODS}, got {self.batch_size}")
        if self.rate <= 0 or self.burst < 1:
            problems.append("rate must be > 0 and burst >= 1")
        if self.max_attempts < 1:
            problems.append("max_attempts must be >= 1")
        if problems:
            raise ValueError("bkcmdb settings: " + "; ".join(problems))

    def limit(self, bk_cmdb_limit: int) -> int:
        """Objects per request for a type whose bk-cmdb limit is `bk_cmdb_limit`."""
        return min(self.batch_size, bk_cmdb_limit)
