"""The engine's exceptions.

```
ReconcilerError
├── SourceError
│   ├── Expired            the requested version is gone (HTTP 410): relist and diff
│   └── SourceUnavailable  transient: network, 5xx, 429 (carries an optional retry_after)
│       ├── Stalled        a watch sent nothing, not even a bookmark, for too long
│       └── Refused        the source refuses this kind: access denied, or the API is absent
├── StoreError
│   ├── Transient          the write may succeed if retried (connection lost, deadlock)
│   └── Fenced             another owner holds the cluster's lease: stop writing
└── QueueClosed            the senders have ended: a producer must not wait for them
```
Anything else escaping a source or store is a bug and is logged with its traceback once.
"""

from __future__ import annotations


class ReconcilerError(Exception):
    """Base of every error the engine raises or expects from its collaborators."""


class SourceError(ReconcilerError):
    """A source could not list or watch."""


class Expired(SourceError):
    """The version asked for is older than the source's history: list again."""


class SourceUnavailable(SourceError):
    """A transient source failure; `retry_after` (seconds) is honoured when the server sent it."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Stalled(SourceUnavailable):
    """A watch stream went silent past the inactivity bound; it is reopened."""


class Refused(SourceUnavailable):
    """The source refuses this scope (401/403), or does not have it (404: an API the cluster
    lacks). Retried with backoff like any outage, but reported for what it is: it needs a
    person (RBAC, a CRD), not patience."""


class StoreError(ReconcilerError):
    """A store could not apply a batch or load an index."""


class Transient(StoreError):
    """The operation may succeed when retried."""


class Fenced(StoreError):
    """This writer no longer holds the cluster's lease; its writes are refused."""



class QueueClosed(ReconcilerError):
    """The senders are gone (stopped, fenced or failed): nothing more is taken or flushed."""
