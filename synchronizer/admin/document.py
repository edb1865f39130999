"""A topology document: validated whole, normalised, and turned into cluster specs.

The admin API takes `{"clusters": [{"id", "biz_id", "server", "token"?,
"insecure_skip_tls_verify"?, "kinds"?}, ...]}` and must answer a malformed one with every
problem at once (a caller fixing one problem per round trip is the failure mode this
avoids), each one line naming where it is (`clusters[2].server: ...`) and never quoting a
token. A valid document is normalised - clusters sorted by id, every optional key
explicit - so that the same topology written twice, in any key or cluster order, has the
same canonical JSON and the same digest: re-applying it is recognised as a no-op.

The registry side (stored document → cluster specs) is `registries.topology`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson

from synchronizer.settings import ALL_KINDS

NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
"""Topology names: a DNS subdomain, as Kubernetes names things."""
NAME_LIMIT = 253
CLUSTER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
ID_LIMIT = 128
"""The CMDB's cluster_id width."""
MAX_CLUSTERS = 1000
"""Clusters in one topology (more is a mistake, or a different tool)."""
CLUSTER_KEYS = ("id", "biz_id", "server", "token", "insecure_skip_tls_verify", "kinds")


class Invalid(ValueError):
    """A document with problems; `problems` lists every one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def check_name(name: str) -> list[str]:
    """Problems of a topology name (empty when fine)."""
    if len(name) > NAME_LIMIT or not NAME.match(name):
        return [f"topology name {name[:80]!r} must be lower-case letters, digits, '-' and"
                f" '.', starting and ending with a letter or digit, at most {NAME_LIMIT}"]
    return []


def _cluster(i: int, raw: Any, problems: list[str]) -> dict[str, Any] | None:
    where = f"clusters[{i}]"
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: must be an object")
        return None
    before = len(problems)
    problems.extend(f"{where}.{key}: unknown key" for key in raw if key not in CLUSTER_KEYS)
    cid = raw.get("id")
    if not isinstance(cid, str) or not cid:
        problems.append(f"{where}.id: required, a string")
    elif len(cid) > ID_LIMIT or not CLUSTER_ID.match(cid):
        problems.append(f"{where}.id: {cid[:80]!r} is not a cluster id (letters, digits, '.',"
                        f" '_', '-'; at most {ID_LIMIT})")
    biz = raw.get("biz_id")
    if biz is None:
        problems.append(f"{where}.biz_id: required")
    elif isinstance(biz, bool) or not isinstance(biz, int) or biz < 0:
        problems.append(f"{where}.biz_id: must be a whole number >= 0")
    server = raw.get("server")
    if not isinstance(server, str) or not server:
        problems.append(f"{where}.server: required, an http(s) URL")
    elif urlsplit(server).scheme not in ("http", "https") or not urlsplit(server).netloc:
        problems.append(f"{where}.server: {server[:120]!r} is not an http(s) URL")
    token = raw.get("token")
    if token is not None and (not isinstance(token, str) or not token):
        problems.append(f"{where}.token: must be a non-empty string")
    insecure = raw.get("insecure_skip_tls_verify", False)
    if not isinstance(insecure, bool):
        problems.append(f"{where}.insecure_skip_tls_verify: must be true or false")
    kinds = raw.get("kinds")
    if kinds is not None and (not isinstance(kinds, list) or not kinds
                              or any(k not in ALL_KINDS for k in kinds)):
        problems.append(f"{where}.kinds: must be a non-empty list of {', '.join(ALL_KINDS)}")
    if len(problems) > before:
        return None
    return {"id": cid, "biz_id": biz, "server": str(server).rstrip("/"), "token": token,
            "insecure_skip_tls_verify": insecure,
            "kinds": list(dict.fromkeys(kinds)) if kinds else None}


def parse(body: bytes) -> dict[str, Any]:
    """The normalised document of a request body; `Invalid` with every problem."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Invalid([f"body: not JSON ({str(exc).splitlines()[0]})"]) from None
    if not isinstance(doc, Mapping):
        raise Invalid(["body: must be a JSON object with a \"clusters\" list"])
    problems = [f"{key}: unknown key" for key in doc if key != "clusters"]
    clusters = doc.get("clusters")
    if not isinstance(clusters, list):
        problems.append("clusters: required, a list of clusters")
        raise Invalid(problems)
    if not clusters:
        problems.append("clusters: name at least one cluster (DELETE removes a topology)")
    if len(clusters) > MAX_CLUSTERS:
        problems.append(f"clusters: at most {MAX_CLUSTERS} clusters in one topology")
        raise Invalid(problems)
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(clusters):
        cluster = _cluster(i, raw, problems)
        cid = raw.get("id") if isinstance(raw, Mapping) else None
        if isinstance(cid, str) and cid in seen:
            problems.append(f"clusters[{i}].id: {cid[:80]!r} is also clusters[{seen[cid]}]")
            continue
        if isinstance(cid, str):
            seen[cid] = i
        if cluster is not None:
            out.append(cluster)
    if problems:
        raise Invalid(problems)
    return {"clusters": sorted(out, key=lambda c: c["id"])}


def canonical(doc: Mapping[str, Any]) -> str:
    """The stored text of a normalised document."""
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()


def digest(text: str) -> str:
    """The digest of a document's canonical text (tokens included)."""
    return hashlib.sha256(text.encode()).hexdigest()


def public(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The clusters of a document without their tokens (`token_set` says if one is)."""
    return [{**{k: v for k, v in c.items() if k != "token"}, "token_set": bool(c.get("token"))}
            for c in doc.get("clusters") or ()]
