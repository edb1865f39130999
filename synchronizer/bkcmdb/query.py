"""bk-cmdb's list semantics for the reference model: filter expressions and pages.

bk-cmdb lists take `filter` (`{"condition": "AND"|"OR", "rules": [...]}`, rules nested up to
a few levels, each atomic rule a `field`/`operator`/`value` triple; dotted fields such as
`ref.id` reach into objects) and `page` (`{start, limit, sort, enable_count}`). The model
evaluates them on plain dicts so the simulator answers lists the way bk-cmdb does, including
its refusals: a page over 500 rows is 1199059, a page without a positive limit is 1199011,
an `in` with more than 500 values is 1199006. Sorting is by one field, `-field` descending,
ties broken by `id` so paging is stable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import codes
from .codes import Refusal

Row = Mapping[str, Any]
_MISSING = object()


def _get(row: Row, field: str) -> Any:
    value: Any = row
    for part in field.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _compare(op: str) -> Callable[[Any, Any], bool]:
    def check(have: Any, want: Any) -> bool:
        try:
            if op == "less":
                return bool(have < want)
            if op == "less_or_equal":
                return bool(have <= want)
            if op == "greater":
                return bool(have > want)
            return bool(have >= want)
        except TypeError:
            return False
    return check


def _in(have: Any, want: Any) -> bool:
    if isinstance(have, list):
        return any(item in want for item in have)
    return have in want


_ATOMS: dict[str, Callable[[Any, Any], bool]] = {
    "equal": lambda have, want: have == want,
    "not_equal": lambda have, want: have != want,
    "in": _in,
    "not_in": lambda have, want: not _in(have, want),
    "less": _compare("less"),
    "less_or_equal": _compare("less_or_equal"),
    "greater": _compare("greater"),
    "greater_or_equal": _compare("greater_or_equal"),
}


def compile_filter(expr: Any, *, depth: int = 1, max_depth: int = 3) -> Callable[[Row], bool]:
    """Turn a filter expression into a predicate; a malformed one is bk-cmdb's 1199006."""
    if expr is None:
        return lambda row: True
    if not isinstance(expr, Mapping):
        raise Refusal(codes.PARAMS_INVALID, codes.message(codes.PARAMS_INVALID, "filter"))
    if "condition" in expr:
        if depth > max_depth:
            raise Refusal(codes.PARAMS_INVALID, codes.message(
                codes.PARAMS_INVALID, f"expression rules depth exceeds maximum {max_depth}"))
        condition = str(expr.get("condition", "")).upper()
        rules = expr.get("rules")
        if condition not in ("AND", "OR") or not isinstance(rules, list) or not rules:
            raise Refusal(codes.PARAMS_INVALID, codes.message(codes.PARAMS_INVALID, "filter"))
        parts = [compile_filter(rule, depth=depth + 1, max_depth=max_depth) for rule in rules]
        if condition == "AND":
            return lambda row: all(part(row) for part in parts)
        return lambda row: any(part(row) for part in parts)
    field, op, want = expr.get("field"), expr.get("operator"), expr.get("value")
    if not isinstance(field, str) or op not in _ATOMS:
        raise Refusal(codes.PARAMS_INVALID, codes.message(codes.PARAMS_INVALID, "filter"))
    if op in ("in", "not_in"):
        if not isinstance(want, list):
            raise Refusal(codes.PARAMS_INVALID, codes.message(codes.PARAMS_INVALID, field))
        if len(want) > codes.MAX_IN_VALUES:
            raise Refusal(codes.PARAMS_INVALID, codes.message(
                codes.PARAMS_INVALID, f"{field} in values exceeds maximum {codes.MAX_IN_VALUES}"))
    atom = _ATOMS[op]

    def predicate(row: Row) -> bool:
        have = _get(row, field)
        return have is not _MISSING and atom(have, want)
    return predicate


def check_page(page: Any, *, limit: int = codes.MAX_PAGE) -> dict[str, Any]:
    """Validate a page as `BasePage.ValidateWithEnableCount` does; return it normalised."""
    if not isinstance(page, Mapping):
        page = {}
    start, size = page.get("start", 0), page.get("limit", 0)
    sort = page.get("sort", "") or ""
    count = bool(page.get("enable_count", False))
    if count:
        if start or size or sort:
            raise Refusal(codes.PARAMS_INVALID,
                            codes.message(codes.PARAMS_INVALID, "page.enable_count"))
        return {"start": 0, "limit": 0, "sort": "", "enable_count": True}
    if not isinstance(start, int) or start < 0:
        raise Refusal(codes.PARAMS_IS_INVALID,
                        codes.message(codes.PARAMS_IS_INVALID, "page.start"))
    if not isinstance(size, int) or size <= 0:
        raise Refusal(codes.PARAMS_IS_INVALID,
                        codes.message(codes.PARAMS_IS_INVALID, "page.limit"))
    if size > limit:
        raise Refusal(codes.PAGE_LIMIT_EXCEEDED, codes.message(codes.PAGE_LIMIT_EXCEEDED))
    return {"start": start, "limit": size, "sort": str(sort), "enable_count": False}


def select(rows: Iterable[Row], *, filter: Any, page: Any, fields: Any = None,
           max_depth: int = 3) -> dict[str, Any]:
    """Answer one list request: `{"count", "info"}` exactly as bk-cmdb shapes it."""
    predicate = compile_filter(filter, max_depth=max_depth)
    checked = check_page(page)
    matched = [row for row in rows if predicate(row)]
    if checked["enable_count"]:
        return {"count": len(matched), "info": []}
    sort = checked["sort"] or "id"
    reverse = sort.startswith("-")
    key = sort.lstrip("-")

    def order(row: Row) -> tuple[bool, str, Any]:
        value = _get(row, key)
        absent = value is _MISSING or value is None
        return (absent, type(value).__name__, None if absent else value)
    matched.sort(key=lambda row: row.get("id", 0))
    matched.sort(key=order, reverse=reverse)
    window = matched[checked["start"]:checked["start"] + checked["limit"]]
    if isinstance(fields, list) and fields:
        window = [{f: row[f] for f in fields if f in row} for row in window]
    return {"count": 0, "info": [dict(row) for row in window]}
