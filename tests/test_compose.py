"""docker-compose.yml and the Dockerfiles, checked without a container engine: the compose
file against the Compose JSON schema (vendored by check-jsonschema), the services the call
needs, GPU reservation, no literal secrets, images installed by scripts/bootstrap.sh, and
every container command accepted by the real ``talkcodec`` argument parser."""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"

jsonschema = pytest.importorskip("jsonschema")
ruamel_yaml = pytest.importorskip("ruamel.yaml")
builtin = pytest.importorskip("check_jsonschema.builtin_schemas")


def _schema() -> dict:
    path = Path(builtin.__file__).parent / "vendor" / "compose-spec.json"
    return json.loads(path.read_text())


def _compose() -> dict:
    yaml = ruamel_yaml.YAML(typ="safe", pure=True)
    return yaml.load(COMPOSE.read_text())


def _errors(doc: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(_schema())
    return [e.message for e in validator.iter_errors(doc)]


def test_compose_file_is_valid_against_the_compose_schema() -> None:
    assert _errors(_compose()) == []


def test_schema_check_can_fail() -> None:
    broken = copy.deepcopy(_compose())
    broken["services"]["signalling"]["ports"] = {"8000": "8000"}  # must be a list
    broken["services"]["turn"]["restart"] = ["always"]
    assert len(_errors(broken)) >= 2


def test_call_services_gpu_and_secrets() -> None:
    services = _compose()["services"]  # the safe loader merges the `<<` anchors
    assert {"signalling", "receiver", "receiver-gpu", "turn"} <= set(services)
    gpu = services["receiver-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["driver"] == "nvidia"
    assert "deploy" not in services["receiver"]  # the CPU receiver reserves nothing
    assert services["receiver"]["profiles"] == ["cpu"]
    assert services["receiver-gpu"]["profiles"] == ["gpu"]
    # The GPU image installs the `gpu` extra (CUDA build of ONNX Runtime) and insists on it.
    assert services["receiver-gpu"]["build"]["args"]["EXTRAS"].split() == ["call", "gpu"]
    assert services["receiver-gpu"]["environment"]["TALKCODEC_DEVICE"] == "cuda"
    assert "TALKCODEC_DEVICE" not in services["receiver"]["environment"]
    assert services["receiver-gpu"]["environment"]["TALKCODEC_SECRET"].startswith("${")
    assert "coturn" in services["turn"]["image"]
    text = COMPOSE.read_text()
    # Secrets come from the environment at `up` time, required, never written here.
    assert "${TALKCODEC_SECRET:?" in text and "${TALKCODEC_TURN_SECRET:?" in text
    # coturn checks time-limited credentials (server/turn.py), no fixed user.
    assert "--static-auth-secret" in services["turn"]["command"] and "--user" not in text
    conf = (ROOT / "docker" / "turnserver.conf").read_text()
    assert re.search(r"^use-auth-secret$", conf, re.M) and "lt-cred-mech" not in conf
    for service in services.values():
        for key, value in (service.get("environment") or {}).items():
            if "SECRET" in key or "PASSWORD" in key:
                assert str(value).startswith("${"), (key, value)


def test_dockerfiles_use_bootstrap_and_exist() -> None:
    services = _compose()["services"]
    for name in ("signalling", "receiver"):
        dockerfile = ROOT / services[name]["build"]["dockerfile"]
        text = dockerfile.read_text()
        assert re.search(r"^RUN scripts/bootstrap\.sh ", text, re.M), dockerfile
        assert re.search(r"^FROM python:3\.11", text, re.M)
    assert (ROOT / "docker" / "turnserver.conf").exists()
    signalling = (ROOT / "docker" / "Dockerfile.signalling").read_text()
    assert re.search(r"^RUN scripts/bootstrap\.sh call &&", signalling, re.M)
    receiver = (ROOT / "docker" / "Dockerfile.receiver").read_text()
    assert re.search(r'^ARG EXTRAS="call cpu"$', receiver, re.M)  # CPU unless the gpu profile
    assert re.search(r"^RUN scripts/bootstrap\.sh \$EXTRAS &&", receiver, re.M)
    assert "scripts/bootstrap.sh" in (ROOT / "Makefile").read_text()  # what the README uses


def test_call_images_carry_onnx_runtime_not_torch() -> None:
    """The extras the images install: ONNX Runtime (cpu or gpu) for the receiver, nothing of
    it for signalling, and never torch (only the train and bench extras carry it)."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = " ".join(extras["dependencies"])
    optional = extras["optional-dependencies"]
    gpu_args = _compose()["services"]["receiver-gpu"]["build"]["args"]["EXTRAS"].split()
    for image in (["call"], ["call", "cpu"], gpu_args):
        carried = deps + " " + " ".join(d for e in image for d in optional[e])
        assert "torch" not in carried, image
        assert ("onnxruntime" in carried) == (image != ["call"]), image
    assert optional["gpu"][0].startswith("onnxruntime-gpu")
    assert any(d.startswith("torch") for d in optional["train"])
    assert any(d.startswith("torch") for d in optional["bench"])


def _expand(arg: str) -> str:
    return re.sub(r"\$\{(\w+)(?::?[-?][^}]*)?\}",
                  lambda m: re.split(r":?[-?]", m.group(0)[2:-1], maxsplit=1)[1]
                  if ":-" in m.group(0) else "x", arg)


def test_container_commands_parse_with_the_real_cli() -> None:
    from codec.cli import build_parser

    parser = build_parser()
    services = _compose()["services"]
    commands = [services[s]["command"] for s in ("signalling", "receiver", "receiver-gpu")]
    for name in ("Dockerfile.signalling", "Dockerfile.receiver"):
        cmd_line = [line for line in (ROOT / "docker" / name).read_text().splitlines()
                    if line.startswith("CMD ")][0]
        commands.append(json.loads(cmd_line[4:]))
    for command in commands:
        assert command[0] == "talkcodec"
        args = parser.parse_args([_expand(a) for a in command[1:]])
        assert args.func is not None
    with pytest.raises(SystemExit):
        parser.parse_args(shlex.split("serve --role everything"))
