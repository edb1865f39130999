"""The Helm chart, rendered by Helm's own engine and checked object by object.

Every value set renders objects that are valid for the Kubernetes OpenAPI schemas (strict),
keep the security posture and probes, keep secrets out of ConfigMaps, and produce a config
file the synchronizer itself accepts. Bad values are refused at install time.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from deploy_helpers import CHART, by_kind, one, render, render_manifests, validate_objects

from synchronizer import settings as sync_settings

SECRET_PASSWORD = "s3cr3t-Pa55word"
SECRET_DSN = f"mysql://sync:{SECRET_PASSWORD}@mariadb.db.svc:3306/cmdb"
ZK = "zk-0.zk:2181,zk-1.zk:2181,zk-2.zk:2181"
APP_SECRET = "bk-App-s3cret-7e21"
BKCMDB = {"url": "https://bkapi.example.com/api/bk-cmdb/prod", "app_code": "bcs"}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "replicas-3": {"replicas": 3, "config": {"zookeeper": {"hosts": ZK}}},
    "service-monitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}},
    "prometheus-rule": {"prometheusRule": {"enabled": True, "labels": {"release": "kps"}}},
    "dashboard": {"dashboard": {"enabled": True}},
    "existing-secrets": {
        "cmdb": {"existingSecret": "cmdb-credentials", "existingSecretKey": "url"},
        "kubeconfigs": {"existingSecret": "cluster-kubeconfigs"},
        "config": {"clusters": [
            {"id": "cluster-a", "biz_id": 2},
            {"id": "cluster-b", "biz_id": 3, "context": "admin@b",
             "kubeconfig": "/etc/bkcmdb-synchronizer/kubeconfigs/b.yaml"},
            {"id": "cluster-c", "biz_id": 4, "server": "https://api.c.example:6443",
             "ca_file": "/etc/bkcmdb-synchronizer/kubeconfigs/c-ca.crt"},
        ]},
    },
    "chart-secret": {"cmdb": {"dsn": SECRET_DSN}},
    "bkcmdb-existing-secret": {"config": {"bkcmdb": BKCMDB},
                               "bkcmdb": {"existingSecret": "bk-app", "existingSecretKey": "s"}},
    "bkcmdb-chart-secret": {"config": {"bkcmdb": {**BKCMDB, "period": 2, "rate": 50}},
                            "bkcmdb": {"appSecret": APP_SECRET}},
    "bkcmdb-direct": {"config": {"bkcmdb": {"url": "http://cmdb-api.cmdb.svc", "auth": "direct",
                                            "api": "container"}}},
    "everything": {
        "replicas": 5,
        "image": {"repository": "registry.example/bkcmdb-synchronizer",
                  "digest": "sha256:" + "ab" * 32},
        "imagePullSecrets": [{"name": "registry"}],
        "config": {"zookeeper": {"hosts": ZK, "root": "/prod-sync"},
                   "sync": {"senders": 16, "batch_size": 1000, "full_sync_interval": 900}},
        "inCluster": {"enabled": False},
        "cmdb": {"existingSecret": "cmdb-credentials"},
        "registries": {"crd": {"enabled": True, "secretNamespaces": ["a", "b"]},
                       "http": {"url": "https://bcs-api.example", "existingSecret": "bcs",
                                "interval": 300}},
        "adminApi": {"existingSecret": "admin-token"},
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "dashboard": {"enabled": True, "namespace": "monitoring"},
        "podDisruptionBudget": {"minAvailable": 2},
        "podAnnotations": {"team": "infra"},
        "extraEnv": [{"name": "BKCMDB_SYNC__LINGER", "value": "0.05"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra",
                         "effect": "NoSchedule"}],
        "priorityClassName": "system-cluster-critical",
    },
}


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    """(value-set name, rendered objects) for each value set."""
    return request.param, render(VALUE_SETS[request.param])


def _pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment")["spec"]["template"]["spec"]


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = _pod_spec(objects)["containers"]
    assert len(containers) == 1
    return containers[0]


def _config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    configmaps = [o for o in by_kind(objects, "ConfigMap") if "config.yaml" in o["data"]]
    assert len(configmaps) == 1
    return yaml.safe_load(configmaps[0]["data"]["config.yaml"])


def test_every_object_is_valid_kubernetes(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = rendered
    checked = validate_objects(objects)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "ConfigMap", "Service", "ServiceAccount", "PodDisruptionBudget"} <= kinds
    assert "Deployment@1.25" in checked and "Deployment@1.35" in checked
    expected_optional = {
        "service-monitor": "ServiceMonitor", "prometheus-rule": "PrometheusRule",
        "chart-secret": "Secret",
    }
    if name in expected_optional:
        assert expected_optional[name] in kinds
    if name == "everything":
        assert {"ServiceMonitor", "PrometheusRule", "Role", "RoleBinding"} <= kinds


def test_security_context_and_probes(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    pod = _pod_spec(objects)
    container = _container(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # the only writable place is an emptyDir on /tmp
    tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp) == 1
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[tmp[0]["name"]]
    assert all(m.get("readOnly") for m in container["volumeMounts"] if m["mountPath"] != "/tmp")

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8888, "metrics": 9999}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["resources"]["requests"]["memory"]
    assert container["resources"]["limits"]["memory"]
    assert container["args"] == ["run", "--config", "/etc/bkcmdb-synchronizer/config.yaml"]
    assert pod["terminationGracePeriodSeconds"] >= 30


def test_deployment_rolls_and_spreads(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = rendered
    deployment = one(objects, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == VALUE_SETS[name].get("replicas", 1)
    assert spec["strategy"]["type"] == "RollingUpdate"
    rolling = spec["strategy"]["rollingUpdate"]
    if _config(objects).get("zookeeper"):
        assert rolling == {"maxSurge": 1, "maxUnavailable": 0}
    else:  # two standalone instances would both own every cluster
        assert rolling == {"maxSurge": 0, "maxUnavailable": 1}
    template = spec["template"]
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items()
    checksum = template["metadata"]["annotations"]["checksum/config"]
    assert len(checksum) == 64 and int(checksum, 16) >= 0
    spread = template["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {
        "kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for constraint in spread:
        assert constraint["labelSelector"]["matchLabels"] == selector
    service = one(objects, "Service")
    assert service["spec"]["selector"] == selector
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "http": 8888, "metrics": 9999}
    assert one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector


def test_config_change_rolls_the_pods() -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = one(render(values), "Deployment")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    base = checksum({})
    assert checksum({"replicas": 0}) == base  # not a config change
    assert checksum({"config": {"sync": {"senders": 4}}}) != base


def test_env_carries_identity_and_dsn(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = rendered
    env = {e["name"]: e for e in _container(objects)["env"]}
    assert env["BKCMDB_INSTANCE__ID"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.name"}}
    ref = env["BKCMDB_CMDB__DSN"]["valueFrom"]["secretKeyRef"]
    cmdb = VALUE_SETS[name].get("cmdb", {})
    if cmdb.get("existingSecret"):
        assert ref == {"name": cmdb["existingSecret"], "key": cmdb.get("existingSecretKey", "dsn")}
        assert not by_kind(objects, "Secret")
    else:
        assert ref == {"name": "bkcmdb-synchronizer-cmdb", "key": "dsn"}
    assert all("value" not in e or "://" not in e["value"] for e in env.values())


def test_registry_and_admin_tokens_come_from_secrets() -> None:
    objects = render(VALUE_SETS["everything"])
    env = {e["name"]: e for e in _container(objects)["env"]}
    assert env["BKCMDB_REGISTRIES__HTTP__TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "bcs", "key": "token"}}
    assert env["BKCMDB_INSTANCE__ADMIN_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "admin-token", "key": "token"}}
    assert _config(objects)["registries"] == {
        "crd": {"enabled": True, "namespace": ""},
        "http": {"url": "https://bcs-api.example", "interval": 300}}
    default = {e["name"] for e in _container(render({}))["env"]}
    assert not default & {"BKCMDB_REGISTRIES__HTTP__TOKEN", "BKCMDB_INSTANCE__ADMIN_TOKEN"}
    with pytest.raises(helm.HelmRenderError, match=r"registries\.http\.existingSecret"):
        render({"registries": {"http": {"url": "https://bcs-api.example"}}})


def test_no_secret_in_any_configmap(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    for configmap in by_kind(objects, "ConfigMap"):
        text = json.dumps(configmap)
        assert SECRET_PASSWORD not in text and APP_SECRET not in text
        assert "app_secret" not in text
        assert "mysql://" not in text
    config = _config(objects)
    assert "cmdb" not in config  # the DSN comes from a Secret, via the environment
    assert "id" not in config["instance"]  # the pod name, via the environment
    for cluster in config["clusters"]:
        assert "token" not in cluster


def test_chart_created_secret_holds_the_dsn() -> None:
    objects = render(VALUE_SETS["chart-secret"])
    secret = one(objects, "Secret")
    assert secret["metadata"]["name"] == "bkcmdb-synchronizer-cmdb"
    assert base64.b64decode(secret["data"]["dsn"]).decode() == SECRET_DSN
    annotations = one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert len(annotations["checksum/secret"]) == 64
    notes = render_manifests.render_chart(VALUE_SETS["chart-secret"])
    assert all(SECRET_PASSWORD not in text for path, text in notes.items()
               if not path.endswith("secret.yaml"))


def test_bkcmdb_section_and_its_secret() -> None:
    assert "bkcmdb" not in _config(render({})), "off by default"
    for name, secret in (("bkcmdb-existing-secret", {"name": "bk-app", "key": "s"}),
                         ("bkcmdb-chart-secret", {"name": "bkcmdb-synchronizer-bkcmdb",
                                                  "key": "app-secret"})):
        objects = render(VALUE_SETS[name])
        config = _config(objects)
        assert config["bkcmdb"]["url"] == BKCMDB["url"] and "app_secret" not in config["bkcmdb"]
        env = {e["name"]: e for e in _container(objects)["env"]}
        assert env["BKCMDB_BKCMDB__APP_SECRET"]["valueFrom"]["secretKeyRef"] == secret
    objects = render(VALUE_SETS["bkcmdb-chart-secret"])
    (made,) = [s for s in by_kind(objects, "Secret")
               if s["metadata"]["name"] == "bkcmdb-synchronizer-bkcmdb"]
    assert base64.b64decode(made["data"]["app-secret"]).decode() == APP_SECRET
    annotations = one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert len(annotations["checksum/secret"]) == 64
    direct = render(VALUE_SETS["bkcmdb-direct"])
    assert "BKCMDB_BKCMDB__APP_SECRET" not in {e["name"] for e in _container(direct)["env"]}
    assert _config(direct)["bkcmdb"]["auth"] == "direct"


def test_rendered_config_is_accepted_by_the_synchronizer(
    rendered: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    name, objects = rendered
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(_config(objects)))
    env = {"BKCMDB_CMDB__DSN": SECRET_DSN, "BKCMDB_INSTANCE__ID": "bkcmdb-synchronizer-abc12"}
    if "bkcmdb" in _config(objects):
        env["BKCMDB_BKCMDB__APP_SECRET"] = APP_SECRET
    loaded = sync_settings.load_settings(path, environ=env)
    bk = VALUE_SETS[name].get("config", {}).get("bkcmdb")
    assert (loaded.bkcmdb is not None) == bool(bk)
    if loaded.bkcmdb is not None and bk is not None:
        assert loaded.bkcmdb.url == bk["url"]
        assert loaded.bkcmdb.app_secret.get_secret_value() == APP_SECRET
    assert loaded.instance.id == "bkcmdb-synchronizer-abc12"
    assert loaded.cmdb.dsn.get_secret_value() == SECRET_DSN
    assert (loaded.instance.port, loaded.instance.metric_port) == (8888, 9999)
    values = VALUE_SETS[name]
    assert (loaded.zookeeper is not None) == bool(
        values.get("config", {}).get("zookeeper", {}).get("hosts"))
    ids = [c.id for c in loaded.clusters]
    if values.get("inCluster", {}).get("enabled", True):
        assert "in-cluster" in ids
        assert next(c for c in loaded.clusters if c.id == "in-cluster").in_cluster
    for cluster in values.get("config", {}).get("clusters", []):
        got = next(c for c in loaded.clusters if c.id == cluster["id"])
        if "server" not in cluster and "kubeconfig" not in cluster:
            assert got.kubeconfig == f"/etc/bkcmdb-synchronizer/kubeconfigs/{cluster['id']}.yaml"


def test_schema_keys_exist_in_the_synchronizer_settings() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    config = schema["properties"]["config"]["properties"]
    models = {
        "instance": sync_settings.InstanceSettings,
        "zookeeper": sync_settings.ZooKeeperSettings,
        "sync": sync_settings.SyncSettings,
    }
    for key, model in models.items():
        assert set(config[key]["properties"]) <= set(model.model_fields), key
    assert set(config["bkcmdb"]["properties"]) <= set(sync_settings.BkCmdbConfig.model_fields)
    assert not {"app_secret", "app_secret_file"} & set(config["bkcmdb"]["properties"])
    cluster_keys = set(config["clusters"]["items"]["properties"])
    assert cluster_keys <= set(sync_settings.ClusterSettings.model_fields)
    assert "token" not in cluster_keys  # a token would land in the ConfigMap


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"replicas": "three"}, "/replicas"),
        ({"replicas": -1}, "/replicas"),
        ({"replicaCount": 3}, "replicaCount"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"config": {"clusters": [{"id": "a", "server": "https://a", "token": "abc"}]}},
         "token"),
        ({"config": {"clusters": [{"biz_id": 1, "server": "https://a"}]}}, "id"),
        ({"config": {"sync": {"sendres": 4}}}, "sendres"),
        ({"config": {"zookeeper": {"session_timeout": 0}}}, "session_timeout"),
        ({"cmdb": {"dsn": "postgres://x@y/z"}}, "/cmdb/dsn"),
        ({"securityContext": {"readOnlyRootFilesystem": False}}, "readOnlyRootFilesystem"),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "runAsNonRoot"),
        ({"serviceMonitor": {"enabled": "yes"}}, "/serviceMonitor/enabled"),
        ({"ports": {"http": 70000}}, "/ports/http"),
        ({"config": {"bkcmdb": {"batch_size": 300}}}, "batch_size"),
        ({"config": {"bkcmdb": {"app_secret": "x"}}}, "app_secret"),
        ({"config": {"bkcmdb": {"api": "pods"}}}, "/config/bkcmdb/api"),
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError) as excinfo:
        render(values)
    assert where in str(excinfo.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": 3}, "replicas > 1 needs config.zookeeper.hosts"),
        ({"cmdb": {"dsn": SECRET_DSN, "existingSecret": "x"}}, "not both"),
        ({"config": {"clusters": [{"id": "a"}]}}, "neither server nor kubeconfig"),
        ({"config": {"clusters": [{"id": "a", "server": "https://a"},
                                  {"id": "a", "server": "https://b"}]}}, "appears twice"),
        ({"config": {"clusters": [{"id": "in-cluster", "server": "https://a"}]}},
         "also in config.clusters"),
        ({"config": {"bkcmdb": BKCMDB}}, "auth gateway needs the app secret"),
        ({"config": {"bkcmdb": BKCMDB}, "bkcmdb": {"appSecret": "x", "existingSecret": "y"}},
         "not both"),
    ],
)
def test_inconsistent_values_fail_the_render(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=message) as excinfo:
        render(values)
    assert SECRET_PASSWORD not in str(excinfo.value) and APP_SECRET not in str(excinfo.value)


def test_rbac_is_least_privilege() -> None:
    default = render({})
    (role,) = by_kind(default, "ClusterRole")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods", "nodes", "namespaces"],
         "verbs": ["list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"],
         "verbs": ["list", "watch"]},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["list", "watch"]}]
    narrowed = render({"config": {"sync": {"kinds": ["pods", "namespaces"]}}})
    (role,) = by_kind(narrowed, "ClusterRole")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods", "namespaces"],
                              "verbs": ["list", "watch"]}]
    assert "kinds:\n  - pods\n  - namespaces" in one(narrowed, "ConfigMap")["data"][
        "config.yaml"]
    (binding,) = by_kind(default, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "bkcmdb-synchronizer",
                                    "namespace": "sync"}]
    assert not by_kind(default, "Role")
    assert _pod_spec(default)["automountServiceAccountToken"] is True
    assert one(default, "ServiceAccount")["automountServiceAccountToken"] is False

    remote_only = render({"inCluster": {"enabled": False}})
    assert not [o for o in remote_only if o["kind"].endswith(("Role", "RoleBinding"))]
    assert _pod_spec(remote_only)["automountServiceAccountToken"] is False

    crds = {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
            "verbs": ["list", "watch"]}
    sync_clusters = [
        {"apiGroups": ["bkcmdb.bkbcs.tencent.com"], "resources": ["syncclusters"],
         "verbs": ["list", "watch", "patch"]},
        {"apiGroups": ["bkcmdb.bkbcs.tencent.com"], "resources": ["syncclusters/status"],
         "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]
    registry = render({"inCluster": {"enabled": False},
                       "registries": {"crd": {"enabled": True}}})
    (role,) = by_kind(registry, "ClusterRole")
    assert role["rules"] == [crds, *sync_clusters]  # every namespace: cluster-wide
    (secrets,) = by_kind(registry, "Role")
    assert secrets["metadata"]["namespace"] == "sync"
    assert secrets["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    assert one(registry, "RoleBinding")["roleRef"]["name"] == secrets["metadata"]["name"]
    assert _pod_spec(registry)["automountServiceAccountToken"] is True

    namespaced = render({"inCluster": {"enabled": False},
                         "registries": {"crd": {"enabled": True, "namespace": "clusters"}}})
    (role,) = by_kind(namespaced, "ClusterRole")
    assert role["rules"] == [crds, {"apiGroups": [""], "resources": ["namespaces"],
                                    "verbs": ["list", "watch"]}]
    roles = {r["metadata"]["name"]: r for r in by_kind(namespaced, "Role")}
    assert {r["metadata"]["namespace"] for r in roles.values()} == {"clusters"}
    assert roles["bkcmdb-synchronizer-syncclusters"]["rules"] == sync_clusters
    assert roles["bkcmdb-synchronizer-cluster-secrets"]["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    config = yaml.safe_load(one(namespaced, "ConfigMap")["data"]["config.yaml"])
    assert config["registries"] == {"crd": {"enabled": True, "namespace": "clusters"}}

    assert not [o for o in render({"rbac": {"create": False}}) if "Role" in o["kind"]]


def test_kubeconfig_secret_is_mounted_read_only() -> None:
    objects = render(VALUE_SETS["existing-secrets"])
    pod = _pod_spec(objects)
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == "cluster-kubeconfigs"
    (mount,) = [m for m in _container(objects)["volumeMounts"] if m["name"] == volume["name"]]
    assert mount == {"name": volume["name"], "readOnly": True,
                     "mountPath": "/etc/bkcmdb-synchronizer/kubeconfigs"}


def test_scrape_annotations_or_service_monitor() -> None:
    default = render({})
    annotations = one(default, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9999"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert not by_kind(default, "ServiceMonitor")

    objects = render(VALUE_SETS["service-monitor"])
    annotations = one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "prometheus.io/scrape" not in annotations  # scraped once, by the operator
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["sync"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_prometheus_rule_carries_the_alert_file() -> None:
    rule = one(render(VALUE_SETS["prometheus-rule"]), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kps"
    alerts = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    assert rule["spec"] == alerts


def test_dashboard_configmap_carries_the_dashboard_file() -> None:
    objects = render(VALUE_SETS["everything"])
    (dashboard,) = [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith(
        "-dashboard")]
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = dashboard["data"].values()
    assert json.loads(text) == json.loads((CHART / "files" / "dashboard.json").read_text())


def test_helm_lint_is_clean() -> None:
    for values in (None, VALUE_SETS["everything"]):
        report = helm.lint(CHART, copy.deepcopy(values), strict=True)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not problems and not report["errors"], report


def test_notes_tell_how_to_provide_the_dsn() -> None:
    notes = render_manifests.render_chart({}, namespace="sync")[
        "bkcmdb-synchronizer/templates/NOTES.txt"]
    assert "kubectl -n sync create secret generic bkcmdb-synchronizer-cmdb" in notes
    notes = render_manifests.render_chart(VALUE_SETS["replicas-3"], namespace="sync")[
        "bkcmdb-synchronizer/templates/NOTES.txt"]
    assert f"3 replica(s) through ZooKeeper {ZK}" in notes
