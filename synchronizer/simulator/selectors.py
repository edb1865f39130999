"""Label and field selectors on lists and watches (`labelSelector`, `fieldSelector`).

Why: operators and informers narrow what they list and watch (kopf passes the selectors a
handler was registered with; clients watch one object with `metadata.name=`); a server
that ignored the parameters would hand them objects they never asked for, and one that
rejected them would fail clients that are right. The grammar is apimachinery's: labels
`k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, joined by commas; fields
`path=value`, `path==value`, `path!=value` over `metadata.name`, `metadata.namespace` and,
for Pods, `spec.nodeName` and `status.phase` (anything else is the 400 apiserver answers).

Simplification: a watch filters events by the object they carry; apiserver also turns an
update that moves an object out of the selector into a DELETED event. Lists with a
selector parse every object of the resource, which is fine for the sizes tests use.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from .wire import SimError

Matcher = Callable[[bytes], bool]

FIELDS: dict[str, tuple[str, ...]] = {
    "*": ("metadata.name", "metadata.namespace"),
    "pods": ("metadata.name", "metadata.namespace", "spec.nodeName", "status.phase"),
}
"""Field selector paths each resource supports (`*`: every resource)."""

_SET = re.compile(r"^\s*(!?)\s*([A-Za-z0-9._/-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")


def _split(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


Requirement = Callable[[dict[str, Any]], bool]


def _label_requirement(term: str) -> Requirement:
    eq = _EQ.match(term)
    if eq:
        key, op, value = eq.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    found = _SET.match(term)
    if not found:
        raise SimError(400, f"unable to parse requirement: {term!r}")
    negated, key, op, values = found.groups()
    if op:
        if negated:
            raise SimError(400, f"unable to parse requirement: {term!r}")
        allowed = {v.strip() for v in values.split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in allowed
        return lambda labels: labels.get(key) not in allowed
    if negated:
        return lambda labels: key not in labels
    return lambda labels: key in labels


def _field_value(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def matcher(resource: str, label_selector: str | None,
            field_selector: str | None) -> Matcher | None:
    """A predicate on an object's bytes, or None when there is nothing to select on."""
    labels = [_label_requirement(t) for t in _split(label_selector or "")]
    fields: list[tuple[str, str, str]] = []
    allowed = FIELDS.get(resource, FIELDS["*"])
    for term in _split(field_selector or ""):
        eq = _EQ.match(term)
        if not eq:
            raise SimError(400, f"invalid field selector: {term!r}")
        path, op, value = eq.groups()
        if path not in allowed:
            raise SimError(400, f'field label not supported: {path}')
        fields.append((path, op, value))
    if not labels and not fields:
        return None

    def match(raw: bytes) -> bool:
        obj = orjson.loads(raw)
        obj_labels = (obj.get("metadata") or {}).get("labels") or {}
        if not all(req(obj_labels) for req in labels):
            return False
        return all((_field_value(obj, path) == value) != (op == "!=")
                   for path, op, value in fields)

    return match
