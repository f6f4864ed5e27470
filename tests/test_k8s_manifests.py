"""deploy/k8s: every overlay renders and validates (what `make k8s-validate` checks), the validator
catches what it is for, and `make k8s-image` sets the image in its one place. No cluster, no
container: kubectl (pyproject's dev extra) renders, kubernetes-validate's schemas and the vendored
CRD schemas (deploy/k8s/schemas/) judge.
"""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys

import pytest
import yaml

from deploy.k8s import set_image, validate
from service_server import REPO

OVERLAYS = validate.overlays()


def test_there_are_the_overlays_the_readme_names():
    assert {p.name for p in OVERLAYS} == {"cpu", "gpu", "kserve", "monitoring"}


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_overlay_renders_and_validates(overlay):
    objects = validate.render(overlay)
    kinds = sorted(o["kind"] for o in objects)
    want = ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]
    if overlay.name == "kserve":   # KServe makes the Deployment, Service and autoscaler itself
        want = ["InferenceService", "ServingRuntime"]
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


def _runtime_container(objects: list[dict]) -> dict:
    return _of(objects, "ServingRuntime")["spec"]["containers"][0]


def _model(objects: list[dict]) -> dict:
    return _of(objects, "InferenceService")["spec"]["predictor"]["model"]


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


# The same for the kserve overlay: KServe's CRD schemas, and what KServe would run or refuse.
KSERVE_BROKEN = [
    ("a misspelt InferenceService field", lambda o: _model(o).update(protocolVersions=["v2"]),
     "'protocolVersions' was unexpected) (InferenceService CRD schema)"),
    ("a misspelt ServingRuntime field", lambda o: _of(o, "ServingRuntime")["spec"].update(
        supportedModelFormat=_of(o, "ServingRuntime")["spec"].pop("supportedModelFormats")),
     "'supportedModelFormat' was unexpected) (ServingRuntime CRD schema)"),
    ("a scale metric KServe has not", lambda o: _of(o, "InferenceService")["spec"]["predictor"].update(scaleMetric="gpu"),
     "'gpu' is not one of ['cpu', 'memory', 'concurrency', 'rps']"),
    ("a model format without its name", lambda o: _model(o)["modelFormat"].pop("name"),
     "'name' is a required property (InferenceService CRD schema)"),
    ("no predictor", lambda o: _of(o, "InferenceService")["spec"].pop("predictor"),
     "'predictor' is a required property (InferenceService CRD schema)"),
    ("a runtime not in the overlay", lambda o: _model(o).update(runtime="kserve-tritonserver"),
     "runtime 'kserve-tritonserver' is no ServingRuntime of this overlay"),
    ("a protocol the runtime does not speak", lambda o: _model(o).update(protocolVersion="v1"),
     "does not speak protocol 'v1'"),
    ("a format the runtime does not serve", lambda o: _model(o)["modelFormat"].update(name="tensorflow"),
     "does not support model format 'tensorflow'"),
    ("a runtime container KServe does not find", lambda o: _runtime_container(o).update(name="server"),
     "has no container named 'kserve-container'"),
    ("no resources on the InferenceService", lambda o: _model(o).pop("resources"),
     "no memory in predictor.model.resources.limits: KServe's default would replace the runtime's"),
    ("the runtime's latest tag", lambda o: _runtime_container(o).update(image="fashion-zoo-service-cpu:latest"),
     "ServingRuntime/fashion-zoo: container 'kserve-container': image 'fashion-zoo-service-cpu:latest'"),
    ("no readiness probe on the runtime", lambda o: _runtime_container(o).pop("readinessProbe"), "no readinessProbe"),
    ("a writable root in the runtime", lambda o: _runtime_container(o)["securityContext"].pop("readOnlyRootFilesystem"),
     "readOnlyRootFilesystem is not true"),
    ("root allowed in the runtime", lambda o: _runtime_container(o)["securityContext"].pop("runAsNonRoot"),
     "ServingRuntime/fashion-zoo: container 'kserve-container': runAsNonRoot is not true"),
    # KServe merges predictor.model into the runtime's container: what it sets there is checked too.
    ("the InferenceService's env over the runtime's", lambda o: _model(o).update(env=[{"name": "A", "value": "1"}]),
     "InferenceService/auto: container 'kserve-container': FASHION_ZOO_WORKERS does not come from limits.cpu"),
    ("the InferenceService's image over the runtime's", lambda o: _model(o).update(image="fashion-zoo-service-cpu"),
     "InferenceService/auto: container 'kserve-container': image 'fashion-zoo-service-cpu' has no tag"),
]


@pytest.mark.parametrize("what, breaks, problem", KSERVE_BROKEN, ids=[b[0] for b in KSERVE_BROKEN])
def test_validator_reports_what_is_broken_in_kserve(what, breaks, problem):
    objects = _objects("kserve")
    breaks(objects)
    problems = validate.problems_of(objects)
    assert any(problem in p for p in problems), f"{what}: {problems}"


def test_validate_command_fails_on_a_broken_kserve_overlay(tmp_path):
    tree = tmp_path / "k8s"
    shutil.copytree(REPO / "deploy" / "k8s", tree, ignore=shutil.ignore_patterns("__pycache__"))
    isvc = tree / "overlays" / "kserve" / "inferenceservice.yaml"
    isvc.write_text(isvc.read_text().replace("protocolVersion: v2", "protocolVersion: v2\n      storageURI: s3://x"))
    out = subprocess.run([sys.executable, str(REPO / "deploy" / "k8s" / "validate.py"), str(tree / "overlays" / "kserve")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "'storageURI' was unexpected) (InferenceService CRD schema)" in out.stdout, out.stdout


def test_kserve_runtime_is_the_zoos_v2_server():
    """The runtime serves ONNX over V2 on the image's port, its probes ask V2 routes the service
    has, and the InferenceService asks for it by name, for a model the zoo serves."""
    from fastapi import FastAPI

    from service import v2
    from zoo.auto import AUTO
    from zoo.registry import MODELS

    objects = _rendered("kserve")
    runtime, isvc = _of(objects, "ServingRuntime"), _of(objects, "InferenceService")
    assert runtime["spec"]["protocolVersions"] == ["v2"]
    assert {"name": "onnx", "version": "1", "autoSelect": False} in runtime["spec"]["supportedModelFormats"]
    container = _runtime_container(objects)
    assert container["name"] == validate.KSERVE_CONTAINER
    assert [p["containerPort"] for p in container["ports"]] == [3000]
    assert {"name": "FASHION_ZOO_DEVICE", "value": "cpu"} in container["env"]
    app = FastAPI()
    v2.add_routes(app)
    routes = {r.path for r in app.routes if "GET" in getattr(r, "methods", ())}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in routes, (probe, sorted(routes))
        assert container[probe]["httpGet"]["port"] in ("http", 3000)
    model = isvc["spec"]["predictor"]["model"]
    assert (model["runtime"], model["protocolVersion"], model["modelFormat"]["name"]) == (
        runtime["metadata"]["name"], "v2", "onnx")
    assert isvc["metadata"]["name"] in [AUTO, *MODELS], "KServe's clients ask /v2/models/<its name>/"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


@pytest.mark.parametrize("schema", ["servingruntime-serving-kserve-v1alpha1.json",
                                    "inferenceservice-serving-kserve-v1beta1.json"])
def test_vendored_kserve_schemas_are_the_crds_unchanged(schema):
    crds = REPO.parent / "shared" / "kserve-crds"
    if not crds.is_dir():
        pytest.skip(f"no copy of KServe's CRDs at {crds} to compare with")
    vendored = json.loads((validate.SCHEMAS / schema).read_text())
    vendored.pop("$comment")
    kind = schema.split("-", 1)[0]
    crd = yaml.safe_load((crds / f"serving.kserve.io_{kind}s.yaml").read_text())
    version = schema.rsplit("-", 1)[1].removesuffix(".json")
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    assert vendored == served["schema"]["openAPIV3Schema"]


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
    for device, overlay in (("cpu", "cpu"), ("gpu", "gpu"), ("cpu", "monitoring"), ("cpu", "kserve")):
        objects = _rendered(overlay)
        image = (_runtime_container if overlay == "kserve" else _container)(objects)["image"]
        assert image.rsplit(":", 1)[0].rsplit("/", 1)[-1] == set_image.IMAGES[device], (overlay, image)
    base = yaml.safe_load((REPO / "deploy" / "k8s" / "base" / "deployment.yaml").read_text())
    assert base["spec"]["template"]["spec"]["containers"][0]["image"] == set_image.BASE_NAME


def test_set_image_changes_only_the_image_lines(tmp_path):
    tree = tmp_path / "k8s"
    shutil.copytree(REPO / "deploy" / "k8s", tree, ignore=shutil.ignore_patterns("__pycache__"))
    kustomization = tree / set_image.KUSTOMIZATIONS["cpu"].relative_to(set_image.K8S)
    before = kustomization.read_text().splitlines()
    set_image.set_image(kustomization, "registry.example.com/ml/fashion-zoo-service-cpu", "7yy4q7honsxl4ax4")
    after = kustomization.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and [b.strip() for _, b in changed] == [
        "newName: registry.example.com/ml/fashion-zoo-service-cpu", "newTag: 7yy4q7honsxl4ax4"], changed
    for overlay in ("cpu", "monitoring", "kserve"):   # the overlays that run the CPU image
        objects = validate.render(tree / "overlays" / overlay)
        image = (_runtime_container if overlay == "kserve" else _container)(objects)["image"]
        assert image == "registry.example.com/ml/fashion-zoo-service-cpu:7yy4q7honsxl4ax4", overlay
        assert validate.problems_of(objects) == []


@pytest.mark.parametrize("tag", ["latest", "", "bad tag", "-leading-dash"])
def test_set_image_refuses_a_bad_tag(tmp_path, tag):
    kustomization = tmp_path / "kustomization.yaml"
    shutil.copy(set_image.KUSTOMIZATIONS["cpu"], kustomization)
    text = kustomization.read_text()
    with pytest.raises(ValueError, match="bad image tag"):
        set_image.set_image(kustomization, "fashion-zoo-service-cpu", tag)
    assert kustomization.read_text() == text
