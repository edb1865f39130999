"""Alert rules and the Grafana dashboard: valid, and built only from catalogued metrics.

promtool (Debian `prometheus`) checks the rule file and runs unit tests of the alerts on
synthetic series: a healthy instance raises none, each failure raises its alert. Every
PromQL expression is parsed, and the metric names it selects must be in
`synchronizer.metrics.exported_names()`.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import CHART, promql_metric_names, promtool

from synchronizer.metrics import PREFIX, exported_names

ALERTS = CHART / "files" / "alerts.yaml"
DASHBOARD = CHART / "files" / "dashboard.json"
BASE = 'namespace="sync", instance="sync-0:9999"'


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_alert_rules_use_only_catalogued_metrics() -> None:
    known = exported_names()
    used: set[str] = set()
    for rule in _rules():
        names = promql_metric_names(rule["expr"])
        assert names, rule["alert"]
        ours = {n for n in names if n.startswith(PREFIX)}
        assert ours == names, f"{rule['alert']} uses foreign metrics {names - ours}"
        assert ours <= known, f"{rule['alert']} uses unknown metrics {ours - known}"
        used |= ours
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert len(used) >= 15


def test_operator_alerts_are_present() -> None:
    names = {rule["alert"] for rule in _rules()}
    assert names >= {
        "BkcmdbSyncNoInstanceUp", "BkcmdbSyncNoMaster", "BkcmdbSyncReconcilerDown",
        "BkcmdbSyncReconcilerRestarting", "BkcmdbSyncFullSyncFailing",
        "BkcmdbSyncFullSyncTooOld", "BkcmdbSyncLagHigh", "BkcmdbSyncFencedWrites",
        "BkcmdbSyncWritesRejected", "BkcmdbSyncWatchRestartStorm", "BkcmdbSyncWatchExpiredStorm",
        "BkcmdbSyncGateOverflow", "BkcmdbSyncZooKeeperSessionNotConnected",
        "BkcmdbSyncVersionsWentBackwards", "BkcmdbSyncRegistryUnreachable",
        "BkcmdbSyncRegistryConflicts",
        "BkcmdbSyncBkcmdbPendingHigh", "BkcmdbSyncBkcmdbRequestErrors",
        "BkcmdbSyncBkcmdbDeadLetters", "BkcmdbSyncBkcmdbAuthRefused",
    }


def _series(name: str, labels: str, values: str) -> dict[str, str]:
    return {"series": f"bkcmdb_sync_{name}{{{BASE}{', ' + labels if labels else ''}}}",
            "values": values}


def _expected(labels: str = "", **extra: str) -> dict[str, str]:
    out = dict(re.findall(r'(\w+)="([^"]*)"', BASE + ", " + labels))
    out.update(extra)
    return out


# A healthy ZooKeeper-coordinated instance over 60 minutes: none of these alerts may fire.
HEALTHY = [
    _series("is_master", "", "1+0x60"),
    _series("zk_session_state", 'state="connected"', "1+0x60"),
    _series("zk_session_state", 'state="suspended"', "0+0x60"),
    _series("registry_up", 'registry="http"', "1+0x20 0+0x10 1+0x30"),  # a 10-minute outage
    _series("registry_conflicts", "", "0+0x60"),
    _series("reconciler_up", 'cluster="c1"', "1+0x60"),
    _series("reconciler_restarts_total", 'cluster="c1"', "0+0x60"),
    _series("last_full_sync_timestamp_seconds", 'cluster="c1"', "0+60x60"),
    _series("full_syncs_total", 'cluster="c1", trigger="periodic", result="ok"', "0+0.1x60"),
    _series("writes_total", 'cluster="c1", op="upsert", result="written"', "0+100x60"),
    _series("batches_total", 'cluster="c1", result="ok"', "0+10x60"),
    _series("fenced_writes_total", 'cluster="c1"', "0+0x60"),
    _series("watch_restarts_total", 'cluster="c1", reason="closed"', "0+0.2x60"),
    _series("gate_overflows_total", 'cluster="c1"', "0+0x60"),
    _series("version_resets_total", 'cluster="c1"', "0+0x60"),
    _series("lag_seconds", 'cluster="c1"', "0.5+0x60"),
    _series("sender_queue_depth", 'cluster="c1"', "10+0x60"),
    _series("bkcmdb_pending", 'cluster="c1"', "0+0x30 5+0x5 0+0x25"),  # a burst, then equal
    _series("bkcmdb_requests_total", 'endpoint="batch_create_kube_pod", status="success"',
            "0+20x60"),
    _series("bkcmdb_requests_total", 'endpoint="batch_create_kube_pod", status="duplicate"',
            "0+1x60"),
    _series("bkcmdb_requests_total", 'endpoint="list_kube_pod", status="rate_limited"',
            "0+0.5x60"),
    _series("bkcmdb_dead_letters", 'cluster="c1"', "0+0x60"),
    _series("bkcmdb_last_push_timestamp_seconds", 'cluster="c1"', "0+60x60"),
    _series("bkcmdb_last_full_reconcile_timestamp_seconds", 'cluster="c1"', "0+60x60"),
]

# The same instance going wrong in every way at once.
FAILING = [
    _series("is_master", "", "0+0x60"),
    _series("zk_session_state", 'state="connected"', "0+0x60"),
    _series("zk_session_state", 'state="suspended"', "1+0x60"),
    _series("registry_up", 'registry="http"', "0+0x60"),
    _series("registry_conflicts", "", "2+0x60"),
    _series("reconciler_up", 'cluster="c1"', "0+0x60"),
    _series("reconciler_restarts_total", 'cluster="c1"', "0+1x60"),
    _series("last_full_sync_timestamp_seconds", 'cluster="c2"', "0+0x60"),
    _series("full_syncs_total", 'cluster="c2", trigger="periodic", result="error"', "0+1x60"),
    _series("writes_total", 'cluster="c2", op="upsert", result="rejected"', "0+1x60"),
    _series("batches_total", 'cluster="c2", result="ok"', "0+1x60"),
    _series("batches_total", 'cluster="c2", result="error"', "0+1x60"),
    _series("fenced_writes_total", 'cluster="c3"', "0+1x60"),
    _series("watch_restarts_total", 'cluster="c3", reason="expired"', "0+2x60"),
    _series("gate_overflows_total", 'cluster="c3"', "0+1x60"),
    _series("version_resets_total", 'cluster="c3"', "0+0x30 1+0x30"),
    _series("lag_seconds", 'cluster="c3"', "300+0x60"),
    _series("sender_queue_depth", 'cluster="c3"', "50000+0x60"),
    _series("bkcmdb_pending", 'cluster="c4"', "10+1x60"),
    _series("bkcmdb_requests_total", 'endpoint="batch_create_kube_pod", status="success"',
            "0+1x60"),
    _series("bkcmdb_requests_total", 'endpoint="batch_create_kube_pod", status="auth"',
            "0+5x60"),
    _series("bkcmdb_dead_letters", 'cluster="c4"', "3+0x60"),
    _series("bkcmdb_last_push_timestamp_seconds", 'cluster="c4"', "0+0x60"),
    _series("bkcmdb_last_full_reconcile_timestamp_seconds", 'cluster="c4"', "0+0x60"),
]

FIRING: dict[str, list[dict[str, str]]] = {
    "BkcmdbSyncNoMaster": [{"namespace": "sync", "severity": "critical"}],
    "BkcmdbSyncZooKeeperSessionNotConnected": [
        _expected('state="suspended"', severity="critical")],
    "BkcmdbSyncRegistryUnreachable": [_expected('registry="http"', severity="warning")],
    "BkcmdbSyncRegistryConflicts": [_expected(severity="warning")],
    "BkcmdbSyncReconcilerDown": [_expected('cluster="c1"', severity="critical")],
    "BkcmdbSyncReconcilerRestarting": [_expected('cluster="c1"', severity="warning")],
    "BkcmdbSyncFullSyncTooOld": [_expected('cluster="c2"', severity="warning")],
    "BkcmdbSyncFullSyncFailing": [
        {"namespace": "sync", "cluster": "c2", "severity": "warning"}],
    "BkcmdbSyncWritesRejected": [{"namespace": "sync", "cluster": "c2", "severity": "warning"}],
    "BkcmdbSyncStoreErrors": [{"namespace": "sync", "cluster": "c2", "severity": "warning"}],
    "BkcmdbSyncFencedWrites": [_expected('cluster="c3"', severity="critical")],
    "BkcmdbSyncWatchRestartStorm": [_expected('cluster="c3"', severity="warning")],
    "BkcmdbSyncWatchExpiredStorm": [_expected('cluster="c3"', severity="warning")],
    "BkcmdbSyncGateOverflow": [_expected('cluster="c3"', severity="warning")],
    "BkcmdbSyncVersionsWentBackwards": [_expected('cluster="c3"', severity="warning")],
    "BkcmdbSyncLagHigh": [_expected('cluster="c3"', severity="warning")],
    "BkcmdbSyncSenderBacklog": [_expected('cluster="c3"', severity="warning")],
    "BkcmdbSyncBkcmdbPendingHigh": [_expected('cluster="c4"', severity="warning")],
    "BkcmdbSyncBkcmdbRequestErrors": [_expected(severity="warning")],
    "BkcmdbSyncBkcmdbAuthRefused": [_expected(severity="critical")],
    "BkcmdbSyncBkcmdbDeadLetters": [_expected('cluster="c4"', severity="warning")],
    "BkcmdbSyncBkcmdbPushStalled": [_expected('cluster="c4"', severity="warning")],
    "BkcmdbSyncBkcmdbFullReconcileTooOld": [_expected('cluster="c4"', severity="warning")],
}


def test_alerts_fire_on_failures_and_stay_quiet_when_healthy(tmp_path: Path) -> None:
    # promtool compares annotations exactly; the expressions are what is under test here
    # (`check rules` above validates the annotation templates), so drop them.
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    rule_file = tmp_path / "rules.yaml"
    rule_file.write_text(yaml.safe_dump(rules))
    alert_names = [rule["alert"] for rule in _rules()]
    quiet = [n for n in alert_names if n != "BkcmdbSyncNoInstanceUp"]
    tests = {
        "rule_files": [str(rule_file)],
        "evaluation_interval": "1m",
        "tests": [
            {"name": "healthy", "interval": "1m", "input_series": HEALTHY,
             "alert_rule_test": [{"eval_time": "50m", "alertname": n, "exp_alerts": []}
                                  for n in alert_names]},
            {"name": "failing", "interval": "1m", "input_series": FAILING,
             "alert_rule_test": [{"eval_time": "50m", "alertname": n,
                                   "exp_alerts": [{"exp_labels": labels}
                                                  for labels in FIRING.get(n, [])]}
                                  for n in quiet if n in FIRING]},
            {"name": "nothing scraped", "interval": "1m",
             "input_series": [{"series": 'up{job="other"}', "values": "1+0x20"}],
             "alert_rule_test": [{"eval_time": "10m", "alertname": "BkcmdbSyncNoInstanceUp",
                                   "exp_alerts": [{"exp_labels": {"severity": "critical"}}]}]},
        ],
    }
    test_file = tmp_path / "alerts_test.yaml"
    test_file.write_text(yaml.safe_dump(tests))
    result = subprocess.run(
        [promtool(), "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    covered = set(FIRING) | {"BkcmdbSyncNoInstanceUp"}
    untested = set(alert_names) - covered
    assert untested <= {"BkcmdbSyncManyMasters", "BkcmdbSyncRebalanceStorm",
                        "BkcmdbSyncFullSyncNeverCompleted", "BkcmdbSyncEventToRowSlow",
                        "BkcmdbSyncSkippedObjects"}, untested


# --- the dashboard ---------------------------------------------------------------------

def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def test_dashboard_has_only_the_prometheus_input() -> None:
    dashboard = _dashboard()
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
    for node in _walk(dashboard):
        source = node.get("datasource")
        if isinstance(source, dict):
            assert source in ({"type": "prometheus", "uid": "${DS_PROMETHEUS}"},
                              {"type": "grafana", "uid": "-- Grafana --"}), source
        elif source is not None:
            pytest.fail(f"datasource given by name: {source!r}")
    text = DASHBOARD.read_text()
    assert set(re.findall(r"\$\{(DS_[A-Z_]+)\}", text)) == {"DS_PROMETHEUS"}
    assert dashboard["uid"] == "bkcmdb-synchronizer"


def test_dashboard_uses_only_catalogued_metrics() -> None:
    dashboard = _dashboard()
    known = exported_names()
    used: set[str] = set()
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 20
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = promql_metric_names(target["expr"])
            ours = {n for n in names if n.startswith(PREFIX)}
            assert ours == names, f"{panel['title']!r} uses foreign metrics {names - ours}"
            assert ours <= known, f"{panel['title']!r} uses unknown metrics {ours - known}"
            used |= ours
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else \
            variable["query"]
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert match, query
        assert promql_metric_names(match.group(1)) <= known, query
    assert len(used) >= 20
