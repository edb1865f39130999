"""bk-cmdb's error codes and limits: the facts both the simulator and the client rely on.

Why one module of plain constants: the codes and limits are bk-cmdb's, not ours (see
docs/bkcmdb-api.md for the file each one was read from). The reference model raises them, the
simulator answers them, and the client classifies them; keeping them in one place means a
code is spelled once. Routes are deliberately *not* here: the simulator and the client each
spell their own paths, so a wrong path in one is caught by the other in the tests.

The English messages follow bk-cmdb's `resources/errors/english/en/common.json`, with the
`%s`/`%d` arguments filled the way the Go code fills them.
"""

from __future__ import annotations

from typing import Final

# -- success --------------------------------------------------------------------------------------
SUCCESS: Final = 0

# -- bk-cmdb common codes (src/common/errInfo.go) -------------------------------------------------
SYSTEM_BUSY: Final = -1
HTTP_REQUEST_FAILED: Final = 1199002
PARAMS_INVALID: Final = 1199006
PARAMS_NEED_SET: Final = 1199010
PARAMS_IS_INVALID: Final = 1199011
DUPLICATE_ITEM: Final = 1199014
DB_SELECT_FAILED: Final = 1199017
DB_INSERT_FAILED: Final = 1199018
NOT_FOUND: Final = 1199019
DB_UPDATE_FAILED: Final = 1199020
DB_DELETE_FAILED: Final = 1199021
RELY_ON_SERVER_FAILED: Final = 1199022
NOT_AUTH_ITEM: Final = 1199027
EXCEED_LIMIT: Final = 1199035
PROXY_REQUEST_FAILED: Final = 1199036
CHECK_AUTHORIZE_FAILED: Final = 1199046
AUTH_NOT_HAVE_PERMISSION: Final = 1199047
AUTHORIZE_FAILED: Final = 1199048
GENERATE_ID_FAILED: Final = 1199058
PAGE_LIMIT_EXCEEDED: Final = 1199059
TXN_START_FAILED: Final = 1199065
TXN_COMMIT_FAILED: Final = 1199066
TXN_ABORT_FAILED: Final = 1199067
TOO_MANY_REQUESTS: Final = 1199997
UNKNOWN_ERROR: Final = 1199998
INTERNAL_SERVER_ERROR: Final = 1199999
NO_SOURCE_CERTIFICATION: Final = 1100004
NO_PERMISSION: Final = 9900403

# -- BlueKing API gateway codes (its error response guide) ----------------------------------------
GW_INVALID_ARGS: Final = 1640001
GW_APP_NO_PERMISSION: Final = 1640301
GW_IP_NOT_ALLOWED: Final = 1640302
GW_RATE_LIMIT: Final = 1642903
GW_BAD_GATEWAY: Final = 1650200
GW_ERROR_REQUESTING_RESOURCE: Final = 1650201
GW_BACKEND_TIMEOUT: Final = 1650401

TRANSIENT_CODES: Final = frozenset({
    SYSTEM_BUSY, HTTP_REQUEST_FAILED, DB_SELECT_FAILED, DB_INSERT_FAILED, DB_UPDATE_FAILED,
    DB_DELETE_FAILED, RELY_ON_SERVER_FAILED, PROXY_REQUEST_FAILED, GENERATE_ID_FAILED,
    TXN_START_FAILED, TXN_COMMIT_FAILED, TXN_ABORT_FAILED, TOO_MANY_REQUESTS,
    INTERNAL_SERVER_ERROR, 1642901, 1642902, GW_RATE_LIMIT, 1642904, GW_BAD_GATEWAY,
    GW_ERROR_REQUESTING_RESOURCE, GW_BACKEND_TIMEOUT,
})
"""Codes that say "the server could not do it now": the same request may succeed later.

`UNKNOWN_ERROR` (1199998) is not here: bk-cmdb gives it to any plain Go error, which in the
kube handlers are request faults ("node ids not in biz 3", "no pods need created"), not load.
"""

AUTH_CODES: Final = frozenset({
    NOT_AUTH_ITEM, NO_PERMISSION, CHECK_AUTHORIZE_FAILED, AUTH_NOT_HAVE_PERMISSION,
    AUTHORIZE_FAILED, NO_SOURCE_CERTIFICATION, GW_INVALID_ARGS, GW_APP_NO_PERMISSION,
    GW_IP_NOT_ALLOWED,
})
"""Codes that say "these credentials may not do this": retrying cannot help."""

_TEMPLATES: Final[dict[int, str]] = {
    HTTP_REQUEST_FAILED: "HTTP request failed",
    PARAMS_INVALID: "'{0}' data parameter verification does not pass",
    PARAMS_NEED_SET: "'{0}' unassigned",
    PARAMS_IS_INVALID: "'{0}' the parameter is invalid or does not exist",
    DUPLICATE_ITEM: "duplicated instances exist, fields [{0}] duplicated",
    DB_SELECT_FAILED: "Failed to query data",
    DB_INSERT_FAILED: "New data failed",
    NOT_FOUND: "No relevant data found",
    NOT_AUTH_ITEM: "'{0}' authorization information query failed",
    EXCEED_LIMIT: " {0} exceed the limit {1}",
    AUTH_NOT_HAVE_PERMISSION: "Do not have access permission.",
    NO_PERMISSION: "Do not have access permission.",
    PAGE_LIMIT_EXCEEDED: "page limit is exceeded. suggestion 200",
    TOO_MANY_REQUESTS: "too many requests",
    UNKNOWN_ERROR: "Unknown or unrecognized error",
    INTERNAL_SERVER_ERROR: "'{0}' Internal Server Error",
}


def message(code: int, *args: object) -> str:
    """bk-cmdb's English message for `code`, with its arguments filled in."""
    template = _TEMPLATES.get(code, f"error {code}")
    return template.format(*args, *([""] * 2))


class Refusal(Exception):
    """bk-cmdb refused a request: the `result: false` answer's code and message.

    Raised by the reference model (which *is* bk-cmdb for the simulator); the simulator turns
    it into the envelope of the caller's auth mode. The client never sees this class: it
    sees the wire answer and raises its own `errors` from it.
    """

    def __init__(self, code: int, text: str | None = None) -> None:
        self.code = code
        self.text = text if text is not None else message(code)
        super().__init__(f"{code}: {self.text}")


def refuse(code: int, *args: object) -> Refusal:
    """A `Refusal` with bk-cmdb's message for `code` and `args`."""
    return Refusal(code, message(code, *args))


# -- limits (src/kube/types/*.go, src/common/definitions.go) --------------------------------------
MAX_PAGE: Final = 500
"""`BKMaxLimitSize` and the kube `*QueryLimit`s: rows per list page."""
MAX_IN_VALUES: Final = 500
"""`pkg/filter` `MaxInLimit`: values of one `in` rule."""
MAX_CLUSTER_IDS: Final = 10
"""`maxDeleteClusterNum` / `maxUpdateClusterNum`."""
MAX_NAMESPACES: Final = 200
"""`NsCreateLimit`, `NsDeleteLimit`, `NsUpdateLimit`."""
MAX_NODES: Final = 100
"""`maxCreateNodeNum`, `maxDeleteNodeNum`, `maxUpdateNodeNum`."""
MAX_WORKLOADS: Final = 200
"""`WlCreateLimit`, `WlDeleteLimit`."""
MAX_WORKLOAD_UPDATE_IDS: Final = 199
"""`WlUpdateLimit` is 200 but checked with `>=`, so 199 ids is the most one update takes."""
MAX_PODS: Final = 200
"""`createPodsLimit` and `BKMaxWriteOpLimit` (pod deletes count ids across all businesses)."""

WORKLOAD_KINDS: Final = (
    "deployment", "statefulSet", "daemonSet", "gameStatefulSet", "gameDeployment", "cronJob",
    "job", "pods", "customResource",
)
"""bk-cmdb's workload kinds (`WorkloadType.Validate`); `pods` holds controller-less pods."""
