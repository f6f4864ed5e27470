"""deploy/k8s: every overlay renders and validates (what `make k8s-validate` checks), the validator
catches what it is for, and `make k8s-image` sets the image in its one place. No cluster, no
container: kubectl (pyproject's dev extra) renders, kubernetes-validate's schemas judge.
"""
from __future__ import annotations

import copy
import shutil
import subprocess
import sys

import pytest
import yaml

from deploy.k8s import set_image, validate
from service_server import REPO

OVERLAYS = validate.overlays()


def test_there_are_the_overlays_the_readme_names():
    assert {p.name for p in OVERLAYS} == {"cpu", "gpu", "monitoring"}


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_overlay_renders_and_validates(overlay):
    objects = validate.render(overlay)
    kinds = sorted(o["kind"] for o in objects)
    want = ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]
    assert kinds == sorted(want + (["ServiceMonitor"] if overlay.name == "monitoring" else [])), kinds
    assert validate.problems_of(objects) == []


def test_validate_command_passes_on_the_repo():
    out = subprocess.run([sys.executable, str(REPO / "deploy" / "k8s" / "validate.py")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    for overlay in OVERLAYS:
        assert f"overlays/{overlay.name}: ok against Kubernetes" in out.stdout, out.stdout


def _objects(overlay: str = "monitoring") -> list[dict]:
    return copy.deepcopy(_rendered(overlay))


_cache: dict[str, list[dict]] = {}


def _rendered(overlay: str) -> list[dict]:
    if overlay not in _cache:
        _cache[overlay] = validate.render(validate.OVERLAYS / overlay)
    return _cache[overlay]


def _of(objects: list[dict], kind: str) -> dict:
    return next(o for o in objects if o["kind"] == kind)


def _container(objects: list[dict]) -> dict:
    return _of(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def _pod(objects: list[dict]) -> dict:
    return _of(objects, "Deployment")["spec"]["template"]["spec"]


# (what is broken, how, a piece of the problem the validator must report)
BROKEN = [
    ("a misspelt field", lambda o: _container(o).update(livenesProbe=_container(o).pop("livenessProbe")),
     "'livenesProbe' was unexpected"),
    ("a missing liveness probe", lambda o: _container(o).pop("livenessProbe"), "no livenessProbe"),
    ("a missing readiness probe", lambda o: _container(o).pop("readinessProbe"), "no readinessProbe"),
    ("no memory limit", lambda o: _container(o)["resources"]["limits"].pop("memory"), "no memory in resources.limits"),
    ("no CPU request", lambda o: _container(o)["resources"]["requests"].pop("cpu"), "no cpu in resources.requests"),
    ("root allowed", lambda o: _pod(o)["securityContext"].pop("runAsNonRoot"), "runAsNonRoot is not true"),
    ("privilege escalation", lambda o: _container(o)["securityContext"].update(allowPrivilegeEscalation=True),
     "allowPrivilegeEscalation is not false"),
    ("capabilities kept", lambda o: _container(o)["securityContext"].pop("capabilities"),
     "capabilities.drop does not include ALL"),
    ("a writable root", lambda o: _container(o)["securityContext"].update(readOnlyRootFilesystem=False),
     "readOnlyRootFilesystem is not true"),
    ("the latest tag", lambda o: _container(o).update(image="fashion-zoo-service-cpu:latest"), "`latest` is not a version"),
    ("no tag", lambda o: _container(o).update(image="registry.example.com:5000/fashion-zoo-service-cpu"), "has no tag"),
    ("workers from the node", lambda o: _container(o).update(env=[e for e in _container(o)["env"]
                                                                  if e["name"] != "FASHION_ZOO_WORKERS"]),
     "FASHION_ZOO_WORKERS does not come from limits.cpu"),
    ("a wrong type", lambda o: _of(o, "HorizontalPodAutoscaler")["spec"].update(minReplicas="2"),
     "'2' is not of type 'integer'"),
    ("an unknown kind", lambda o: o.append({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}),
     "Couldn't find schema for kind Widget"),
    ("a misspelt ServiceMonitor field", lambda o: _of(o, "ServiceMonitor")["spec"]["endpoints"][0].update(intervall="30s"),
     "'intervall' was unexpected) (ServiceMonitor CRD schema)"),
    ("a ServiceMonitor port by number", lambda o: _of(o, "ServiceMonitor")["spec"]["endpoints"][0].update(port=3000),
     "3000 is not of type 'string'"),
    ("a Service that selects nothing", lambda o: _of(o, "Service")["spec"].update(selector={"app": "other"}),
     "its selector matches no Deployment's pods"),
    ("a budget without a selector", lambda o: _of(o, "PodDisruptionBudget")["spec"].pop("selector"),
     "PodDisruptionBudget/fashion-zoo: its selector matches no Deployment's pods"),
    ("an autoscaler of something else", lambda o: _of(o, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"].update(name="x"),
     "scales Deployment/x, which is not here"),
    ("a ServiceMonitor of no Service", lambda o: _of(o, "ServiceMonitor")["spec"]["selector"].update(matchLabels={"a": "b"}),
     "ServiceMonitor/fashion-zoo: its selector matches no Service"),
]


@pytest.mark.parametrize("what, breaks, problem", BROKEN, ids=[b[0] for b in BROKEN])
def test_validator_reports_what_is_broken(what, breaks, problem):
    objects = _objects()
    breaks(objects)
    problems = validate.problems_of(objects)
    assert any(problem in p for p in problems), f"{what}: {problems}"


def test_validate_command_fails_on_a_broken_overlay(tmp_path):
    tree = tmp_path / "k8s"
    shutil.copytree(REPO / "deploy" / "k8s", tree, ignore=shutil.ignore_patterns("__pycache__"))
    deployment = tree / "base" / "deployment.yaml"
    deployment.write_text(deployment.read_text().replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"))
    out = subprocess.run([sys.executable, str(REPO / "deploy" / "k8s" / "validate.py"), str(tree / "overlays" / "cpu")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "readOnlyRootFilesystem is not true" in out.stdout


def test_gpu_overlay_asks_for_one_gpu_on_gpu_nodes_and_cpu_for_none():
    gpu, cpu = _rendered("gpu"), _rendered("cpu")
    assert _container(gpu)["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert _pod(gpu)["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in _pod(gpu)["tolerations"])
    assert {"name": "FASHION_ZOO_DEVICE", "value": "cuda"} in _container(gpu)["env"]
    assert "nvidia.com/gpu" not in str(cpu)
    assert {"name": "FASHION_ZOO_DEVICE", "value": "cpu"} in _container(cpu)["env"]


def test_each_overlay_names_its_bentofiles_image():
    for device, overlay in (("cpu", "cpu"), ("gpu", "gpu"), ("cpu", "monitoring")):
        image = _container(_rendered(overlay))["image"]
        assert image.rsplit(":", 1)[0].rsplit("/", 1)[-1] == set_image.IMAGES[device], (overlay, image)
    base = yaml.safe_load((REPO / "deploy" / "k8s" / "base" / "deployment.yaml").read_text())
    assert base["spec"]["template"]["spec"]["containers"][0]["image"] == set_image.BASE_NAME


def test_set_image_changes_only_the_image_lines(tmp_path):
    tree = tmp_path / "k8s"
    shutil.copytree(REPO / "deploy" / "k8s", tree, ignore=shutil.ignore_patterns("__pycache__"))
    kustomization = tree / "overlays" / "cpu" / "kustomization.yaml"
    before = kustomization.read_text().splitlines()
    set_image.set_image(kustomization, "registry.example.com/ml/fashion-zoo-service-cpu", "7yy4q7honsxl4ax4")
    after = kustomization.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and [b.strip() for _, b in changed] == [
        "newName: registry.example.com/ml/fashion-zoo-service-cpu", "newTag: 7yy4q7honsxl4ax4"], changed
    objects = validate.render(tree / "overlays" / "cpu")
    assert _container(objects)["image"] == "registry.example.com/ml/fashion-zoo-service-cpu:7yy4q7honsxl4ax4"
    assert validate.problems_of(objects) == []


@pytest.mark.parametrize("tag", ["latest", "", "bad tag", "-leading-dash"])
def test_set_image_refuses_a_bad_tag(tmp_path, tag):
    kustomization = tmp_path / "kustomization.yaml"
    shutil.copy(REPO / "deploy" / "k8s" / "overlays" / "cpu" / "kustomization.yaml", kustomization)
    text = kustomization.read_text()
    with pytest.raises(ValueError, match="bad image tag"):
        set_image.set_image(kustomization, "fashion-zoo-service-cpu", tag)
    assert kustomization.read_text() == text
