"""Structural schemas of custom resources: pruning unknown fields and basic validation.

Why: since apiextensions.k8s.io/v1 every CustomResourceDefinition has a structural
openAPIV3Schema, and apiserver *prunes* what the schema does not describe, silently,
unless `x-kubernetes-preserve-unknown-fields` says otherwise. That is a classic trap for
an operator: kopf, for one, can keep its progress in `status.kopf`, which disappears on a
CRD whose status schema does not preserve unknown fields. So custom resources stored by
the simulator are pruned the same way, and checked for what a schema most often says:
`type`, `required`, `enum` and `nullable`. (The rest of OpenAPI validation, formats,
patterns, bounds and CEL rules, is not simulated.)

`apiVersion`, `kind` and `metadata` at the root are never pruned, as in apiserver.
"""

from __future__ import annotations

from typing import Any

ROOT_KEPT = frozenset({"apiVersion", "kind", "metadata"})

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,),
    "integer": (int,), "number": (int, float),
}


def prune(obj: dict[str, Any], schema: dict[str, Any]) -> None:
    """Remove, in place, every field of `obj` its schema does not describe."""
    props = schema.get("properties") or {}
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        for key, sub in props.items():
            if key not in ROOT_KEPT and key in obj:
                _prune(obj[key], sub)
        return
    for key in list(obj):
        if key in ROOT_KEPT:
            continue
        if key in props:
            _prune(obj[key], props[key])
        else:
            del obj[key]


def _prune(value: Any, schema: dict[str, Any]) -> None:
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
        for key in list(value):
            if props is not None and key in props:
                _prune(value[key], props[key])
            elif isinstance(extra, dict):
                _prune(value[key], extra)
            elif not preserve and extra is not True:
                del value[key]
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _prune(item, schema["items"])


def validate(obj: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Problems of `obj` against its schema, worded like apiserver's field errors."""
    problems: list[str] = []
    props = schema.get("properties") or {}
    for key in schema.get("required") or ():
        if key not in obj:
            problems.append(f"{key}: Required value")
    for key, sub in props.items():
        if key in obj and key not in ROOT_KEPT:
            _validate(obj[key], sub, key, problems)
    return problems


def _validate(value: Any, schema: dict[str, Any], path: str, problems: list[str]) -> None:
    if value is None:
        if not schema.get("nullable"):
            problems.append(f"{path}: Invalid value: \"null\": {path} in body must be of type "
                            f"{schema.get('type', 'object')}: \"null\"")
        return
    kind = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        ok = isinstance(value, (int, str)) and not isinstance(value, bool)
        kind = "int-or-string"
    elif kind in _TYPES:
        ok = isinstance(value, _TYPES[kind]) and not (
            isinstance(value, bool) and kind in ("integer", "number"))
    else:
        ok = True
    if not ok:
        problems.append(f"{path}: Invalid value: \"{type(value).__name__}\": {path} in body "
                        f"must be of type {kind}: {value!r}")
        return
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(f'"{v}"' for v in schema["enum"])
        problems.append(f"{path}: Unsupported value: {value!r}: supported values: {allowed}")
    if isinstance(value, dict):
        for key in schema.get("required") or ():
            if key not in value:
                problems.append(f"{path}.{key}: Required value")
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key) if key in props else (extra if isinstance(extra, dict)
                                                       else None)
            if sub is not None:
                _validate(item, sub, f"{path}.{key}", problems)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for n, item in enumerate(value):
            _validate(item, schema["items"], f"{path}[{n}]", problems)
