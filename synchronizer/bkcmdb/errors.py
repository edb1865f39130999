"""What can go wrong talking to bk-cmdb, sorted by what the caller should do about it.

    BkCmdbError                    every failure; .endpoint .code .message .http_status
    ├── TransientError             retry later (the pusher's task runs again)
    │   ├── RateLimitedError       429, or bk-cmdb's own 1199997; .retry_after
    │   ├── ServerError            5xx, or a `result: false` code meaning load or outage
    │   ├── UnreachableError       no connection, or it broke before a read/delete finished
    │   └── AmbiguousWriteError    a create was sent and the connection broke before the
    │                              answer: it may or may not exist; re-list to find out
    ├── PermanentError             retrying the same request cannot help: dead-letter it
    │   ├── AuthError              bad credentials or no permission (gateway or IAM)
    │   └── RejectedError          bk-cmdb refused the request (bad input, missing reference,
    │                              delete of something still referred to)
    └── DuplicateError             1199014: the object already exists — "done" for an
                                   idempotent create, which adopts the existing object

Why three branches, not an `is_retryable` flag: the pusher's three reactions (retry, dead-
letter, adopt) are distinct code paths, and `except TransientError` reads as the decision.
Every error keeps bk-cmdb's own code and message and prints as one line; none ever holds
request headers or bodies, so credentials cannot leak through an exception.
"""

from __future__ import annotations

from . import codes


class BkCmdbError(Exception):
    """A bk-cmdb request failed; `str()` is one line with bk-cmdb's code and message."""

    def __init__(self, endpoint: str, message: str, *, code: int | None = None,
                 http_status: int | None = None) -> None:
        self.endpoint = endpoint
        self.code = code
        self.message = " ".join(message.split())
        self.http_status = http_status
        super().__init__(self._line())

    def _line(self) -> str:
        parts = [f"bk-cmdb {self.endpoint}:"]
        if self.http_status is not None:
            parts.append(f"HTTP {self.http_status}")
        if self.code is not None:
            parts.append(f"code {self.code}")
        parts.append(self.message or "(no message)")
        return " ".join(parts)


class TransientError(BkCmdbError):
    """The request may succeed if tried again later."""


class RateLimitedError(TransientError):
    """Too many requests; `retry_after` is the server's hint in seconds, if it gave one."""

    def __init__(self, endpoint: str, message: str, *, retry_after: float | None = None,
                 code: int | None = None, http_status: int | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(endpoint, message, code=code, http_status=http_status)


class ServerError(TransientError):
    """bk-cmdb or its gateway failed (5xx, or a `result: false` code meaning an outage)."""


class UnreachableError(TransientError):
    """No usable connection: refused, reset, timed out before an answer."""


class AmbiguousWriteError(TransientError):
    """A create was sent and no answer came back: it may have been applied."""


class PermanentError(BkCmdbError):
    """Retrying the same request cannot succeed."""


class AuthError(PermanentError):
    """Credentials refused, or the user or app has no permission."""


class RejectedError(PermanentError):
    """bk-cmdb refused the request itself: invalid, over a limit, a missing reference …"""


class DuplicateError(BkCmdbError):
    """1199014: an object with the same unique key already exists."""


def classify(endpoint: str, *, code: int | None, message: str, http_status: int,
             retry_after: float | None = None) -> BkCmdbError:
    """The error for an answer that was not a success, by bk-cmdb's code first, then status.

    The code wins over the status because bk-cmdb mixes them: a missing user header is HTTP
    500 with the auth code 1199027 (permanent), its own rate limiter is HTTP 200 with 1199997.
    """
    if code == codes.DUPLICATE_ITEM:
        return DuplicateError(endpoint, message, code=code, http_status=http_status)
    if code in codes.AUTH_CODES or http_status in (401, 403):
        return AuthError(endpoint, message, code=code, http_status=http_status)
    if http_status == 429 or code in (codes.TOO_MANY_REQUESTS, 1642901, 1642902,
                                      codes.GW_RATE_LIMIT, 1642904):
        return RateLimitedError(endpoint, message, retry_after=retry_after, code=code,
                                http_status=http_status)
    if code in codes.TRANSIENT_CODES:
        return ServerError(endpoint, message, code=code, http_status=http_status)
    if code is None and (http_status >= 500 or http_status in (408, 425)):
        return ServerError(endpoint, message, code=code, http_status=http_status)
    if code is not None and code != codes.SUCCESS and http_status < 500:
        return RejectedError(endpoint, message, code=code, http_status=http_status)
    if http_status >= 500:
        return ServerError(endpoint, message, code=code, http_status=http_status)
    return RejectedError(endpoint, message, code=code, http_status=http_status)
