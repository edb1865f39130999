"""Pod projection: the typed fast path and the validating dict path agree on every input;
the owning workload; overlong fields are cut and flagged, never a reason to drop a pod."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synchronizer.kinds import BadObject, Projection
from synchronizer.kinds import pods as projection
from synchronizer.kinds.pods import (
    MODULE_ANNOTATION,
    POD,
    SET_ANNOTATION,
    project_pod,
    project_pod_dict,
    workload_of,
)
from synchronizer.simulator import make_pod

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def ctx(deleted: bool = False, biz_id: int = 3) -> Projection:
    return Projection(resource=POD, biz_id=biz_id, observed=NOW, deleted=deleted)


def project_json(raw: bytes, *, biz_id: int, observed: datetime, deleted: bool = False) -> Any:
    return project_pod(raw, Projection(resource=POD, biz_id=biz_id, observed=observed,
                                       deleted=deleted))


def project(pod: Any, *, biz_id: int, observed: datetime, deleted: bool = False) -> Any:
    return project_pod_dict(pod, Projection(resource=POD, biz_id=biz_id, observed=observed,
                                            deleted=deleted))
BASE = make_pod("ns-a", "web-1", rng=random.Random(1), annotated=True)
BASE["metadata"].update(uid="u-1", resourceVersion="42")

PATHS = [
    ("metadata", "uid"), ("metadata", "namespace"), ("metadata", "name"),
    ("metadata", "resourceVersion"), ("metadata", "labels"), ("metadata", "annotations"),
    ("metadata", "annotations", SET_ANNOTATION), ("metadata", "annotations", MODULE_ANNOTATION),
    ("metadata", "labels", "app"), ("spec", "nodeName"), ("spec", "containers"),
    ("spec", "containers", 0), ("spec", "containers", 0, "name"),
    ("spec", "containers", 0, "image"), ("status", "phase"), ("status", "hostIP"),
    ("status", "podIP"), ("status", "containerStatuses"), ("status", "containerStatuses", 0),
    ("status", "containerStatuses", 0, "name"), ("status", "containerStatuses", 0,
                                                  "containerID"),
    ("metadata",), ("spec",), ("status",),
]
VALUES = st.one_of(
    st.none(), st.just(""), st.integers(-5, 10**12), st.booleans(), st.just([]), st.just({}),
    st.text(max_size=12), st.text(min_size=250, max_size=300), st.just("7"), st.just(" 7"),
    st.just("x" * 300), st.just({"k": "v"}), st.just(["a"]), st.just("'; DROP TABLE pods;--"),
)


def mutate(pod: dict[str, Any], path: tuple[Any, ...], value: Any, drop: bool) -> None:
    node: Any = pod
    for part in path[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(node, dict) != isinstance(path[-1], str):
        return  # JSON objects have string keys, arrays integer indexes
    try:
        if drop and isinstance(node, dict):
            node.pop(path[-1], None)
        else:
            node[path[-1]] = copy.deepcopy(value)
    except (IndexError, TypeError):
        pass


def outcome(fn: Any, arg: Any, deleted: bool) -> Any:
    try:
        record = fn(arg, biz_id=3, observed=NOW, deleted=deleted)
    except BadObject as exc:
        return ("bad", str(exc))
    return (record.key, record.version, record.checksum, record.state, dict(record.fields))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.sampled_from(PATHS), VALUES, st.booleans()), max_size=4),
       deleted=st.booleans())
def test_fast_and_validating_paths_agree(edits: list[Any], deleted: bool) -> None:
    pod = copy.deepcopy(BASE)
    for path, value, drop in edits:
        mutate(pod, path, value, drop)
    raw = orjson.dumps(pod)
    assert outcome(project_json, raw, deleted) == outcome(project, pod, deleted)


def test_realistic_pods_take_the_fast_path() -> None:
    rng = random.Random(2)
    for n in range(50):
        pod = make_pod("ns", f"p-{n}", rng=rng)
        pod["metadata"].update(uid=f"u{n}", resourceVersion=str(n + 1))
        record = projection._fast(orjson.dumps(pod), ctx())
        assert record is not None  # the typed path did not decline
        assert record == project(pod, biz_id=3, observed=NOW)


def test_annotations_choose_set_and_module_only_when_both_are_present() -> None:
    pod = copy.deepcopy(BASE)
    fields = project(pod, biz_id=1, observed=NOW).fields
    assert fields["set_name"] != "bkbcs"
    del pod["metadata"]["annotations"][MODULE_ANNOTATION]
    fields = project_json(orjson.dumps(pod), biz_id=1, observed=NOW).fields
    assert (fields["set_name"], fields["module_name"]) == ("bkbcs", "bkbcs")


def test_volatile_fields_do_not_change_the_checksum() -> None:
    pod = copy.deepcopy(BASE)
    before = project(pod, biz_id=1, observed=NOW).checksum
    pod["metadata"]["managedFields"] = [{"manager": "x", "time": "2030-01-01T00:00:00Z"}]
    pod["status"]["conditions"] = [{"type": "Ready", "lastProbeTime": "now"}]
    pod["metadata"]["resourceVersion"] = "99"
    assert project(pod, biz_id=1, observed=NOW).checksum == before
    pod["metadata"]["labels"]["new"] = "label"
    assert project(pod, biz_id=1, observed=NOW).checksum != before


@pytest.mark.parametrize("raw", [b"null", b"[]", b"{not json", b'"pod"'])
def test_unusable_json_is_one_line_bad_object(raw: bytes) -> None:
    with pytest.raises(BadObject) as info:
        project_json(raw, biz_id=1, observed=NOW)
    assert "\n" not in str(info.value)


def owned(kind: str, name: str, controller: bool = True) -> list[tuple[str, str, bool]]:
    return [(kind, name, controller)]


@pytest.mark.parametrize(("owners", "labels", "expected"), [
    (owned("ReplicaSet", "web-5d4f8b7c9"), {"pod-template-hash": "5d4f8b7c9"},
     ("Deployment", "web")),
    (owned("ReplicaSet", "my-app-v2-5d4f8b7c9"), {"pod-template-hash": "5d4f8b7c9"},
     ("Deployment", "my-app-v2")),
    (owned("ReplicaSet", "lonely"), {}, ("ReplicaSet", "lonely")),  # a ReplicaSet of its own
    (owned("ReplicaSet", "web-abc"), {"pod-template-hash": "xyz"}, ("ReplicaSet", "web-abc")),
    (owned("StatefulSet", "db"), {}, ("StatefulSet", "db")),
    (owned("DaemonSet", "agent"), {}, ("DaemonSet", "agent")),
    (owned("Job", "backup-28391"), {}, ("Job", "backup-28391")),
    ([], {}, ("", "")),  # a bare pod
    (owned("ReplicaSet", "web-1", controller=False), {}, ("", "")),  # not the controller
])
def test_the_workload_of_a_pod(owners: Any, labels: Any, expected: Any) -> None:
    assert workload_of(owners, labels) == expected


def test_both_paths_name_the_workload() -> None:
    pod = copy.deepcopy(BASE)
    pod["metadata"]["labels"]["pod-template-hash"] = "7f9c"
    pod["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7f9c", "uid": "rs-1",
         "controller": True, "blockOwnerDeletion": True}]
    for record in (project(pod, biz_id=1, observed=NOW),
                   project_json(orjson.dumps(pod), biz_id=1, observed=NOW)):
        assert (record.fields["workload_kind"], record.fields["workload_name"]) == (
            "Deployment", "web")


def test_an_overlong_annotation_is_cut_and_flagged_not_a_reason_to_drop_the_pod() -> None:
    """TEST-MATRIX row 47: Kubernetes allows a 300-character annotation; our column holds
    255. The pod is still stored (and so never tombstoned), with the value cut and the
    column named in `truncated`."""
    pod = copy.deepcopy(BASE)
    pod["metadata"]["annotations"][SET_ANNOTATION] = "s" * 300
    for record in (project(pod, biz_id=1, observed=NOW),
                   project_json(orjson.dumps(pod), biz_id=1, observed=NOW)):
        assert record.fields["set_name"] == "s" * 255
        assert record.fields["truncated"] == "set_name"
        assert record.fields["module_name"] == pod["metadata"]["annotations"][MODULE_ANNOTATION]
