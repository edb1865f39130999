"""Scripted API failures: "the next N list requests answer 429 with Retry-After: 2".

Why scripts and not random failures: a fault test must provoke one precise situation (a 410
on the second page of a list, a 504 on the next watch, a 403 for one cluster until it is
fixed) and then assert the client's reaction, so failures are queued explicitly and consumed
in order. Each rule names which requests it matches (`on`, and optionally one `resource`),
how many matching requests to let through first (`after_pages`), how many to fail (`count`,
None = until cleared) and the HTTP status; the body is the `Status` a real API server would
send for that status.

A `Denial` is the other kind of fault: not a queue but a standing state, "nodes of this
cluster answer 403 until allowed again" (RBAC without the permission) or 404 (the API is
not there at all, so discovery does not list it either).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .wire import CONTINUE_TOO_OLD, SimError

Target = Literal["list", "watch", "get", "write", "any"]
"""Which API requests a rule matches; `any` is every request under /api."""

MESSAGES: dict[int, str] = {
    401: "Unauthorized",
    403: 'pods is forbidden: User "system:anonymous" cannot list resource "pods" in API '
         'group "" at the cluster scope',
    404: "the server could not find the requested resource",
    410: "too old resource version: 1 (2)",
    429: "Too many requests, please try again later.",
    500: "Internal error occurred: injected failure",
    503: "The server is currently unable to handle the request",
    504: "Timeout: request did not complete within the allotted timeout",
}


@dataclass(slots=True, kw_only=True)
class FailureRule:
    """One queued failure; consumed as matching requests arrive."""

    status: int
    on: Target = "any"
    count: int | None = 1
    skip: int = 0
    retry_after: int | None = None
    reason: str | None = None
    message: str | None = None
    resource: str | None = None
    """Only requests for this resource id (`nodes`, `deployments.apps`); None: any."""

    def matches(self, op: str, resource: str | None = None) -> bool:
        """Whether a request of kind `op` (list/watch/get/write) for `resource` is one this
        rule counts."""
        return (self.on == "any" or self.on == op) and (
            self.resource is None or self.resource == resource)

    def error(self, *, continued: bool) -> SimError:
        """The Status error to answer, worded as apiserver would for this status."""
        message = self.message
        if message is None:
            message = CONTINUE_TOO_OLD if self.status == 410 and continued else (
                MESSAGES.get(self.status, f"injected failure {self.status}"))
        return SimError(self.status, message, reason=self.reason, retry_after=self.retry_after)


class FailureScript:
    """The per-cluster queue of failure rules, checked by every API handler first."""

    def __init__(self) -> None:
        self._rules: list[FailureRule] = []
        self.injected = 0
        """How many requests were failed by a rule so far (for assertions)."""

    def add(self, rule: FailureRule) -> None:
        """Queue a rule behind the existing ones."""
        self._rules.append(rule)

    def clear(self) -> None:
        """Forget every queued rule (e.g. "credentials fixed")."""
        self._rules.clear()

    @property
    def pending(self) -> int:
        """Rules not yet used up."""
        return len(self._rules)

    def check(self, op: str, *, continued: bool = False,
              resource: str | None = None) -> SimError | None:
        """The error for this request, or None to serve it; consumes the matching rule.

        Only the first rule that matches `op` and `resource` is consulted, so rules for the
        same kind of request play out in the order they were queued.
        """
        for index, rule in enumerate(self._rules):
            if not rule.matches(op, resource):
                continue
            if rule.skip > 0:
                rule.skip -= 1
                return None
            if rule.count is not None:
                rule.count -= 1
                if rule.count <= 0:
                    del self._rules[index]
            self.injected += 1
            return rule.error(continued=continued)
        return None


VERB_OF_OP: dict[str, str] = {"list": "list", "watch": "watch", "get": "get",
                              "write": "update"}


def denied(status: int, *, plural: str, group: str, op: str,
           namespace: str | None) -> SimError:
    """The error a denied resource answers: 403 worded as RBAC words it, or a bare 404."""
    if status != 403:
        return SimError(status, MESSAGES.get(status, f"injected failure {status}"))
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    verb = VERB_OF_OP.get(op, op)
    return SimError(403, f'{plural}{"." + group if group else ""} is forbidden: User '
                    f'"system:serviceaccount:bkcmdb:bkcmdb-synchronizer" cannot {verb} '
                    f'resource "{plural}" in API group "{group}" {scope}',
                    details={"group": group, "kind": plural})
