"""The service's container image, built and run for real (`-m container`).

The image is tests/container_image.py's (the CPU image of a small export made here, built once per
session and shared with tests/test_k8s_play.py; `make container-test` names one that `make
container` built instead).

The container runs with the host's network and gets `--host 127.0.0.1 --port <free port>` after
the image name: arguments after the image go to `bentoml serve`. Every model (and `model=all`)
classifies a real Fashion-MNIST PNG and a real product photo with the labels the same ONNX files
give here; GET /models has the manifest's sha256 and names the onnxruntime build; a bad upload
gets a 4xx; the service runs as a non-root user without torch; SIGTERM stops it cleanly.

Also, without any container: both bentofiles install what the service imports, at pyproject's pins.
"""
from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from bench.server import free_port, wait_ready
from container_image import RUNTIME_PACKAGE, backend_env, check_labels, classify, export_manifest, onnx_sessions
from service_server import REPO
from tests.images import fashion_png, product_photo  # noqa: F401  (the inputs: fixtures)


# ---------------------------------------------------------------------------------------------
# the bentofiles (no container needed)

def _bentofile(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


def _pins(requirements: list[str]) -> dict[str, str]:
    """{distribution: version} of `name[extras]==version` lines, names normalised."""
    out = {}
    for line in requirements:
        m = re.fullmatch(r"\s*([A-Za-z0-9._-]+)(\[[^]]*\])?==([^\s;]+)\s*", line)
        assert m, f"not an exact pin: {line!r}"
        out[re.sub(r"[-_.]+", "-", m[1]).lower()] = m[3]
    return out


def _requires(dist: str, seen: set[str]) -> set[str]:
    """`dist` and everything it requires, transitively, as installed in this environment (the same
    pins as the image's); names normalised."""
    name = re.sub(r"[-_.]+", "-", dist).lower()
    if name in seen:
        return seen
    seen.add(name)
    try:
        reqs = importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
        return seen
    for req in reqs:
        if "extra ==" in req:
            continue
        _requires(re.match(r"[A-Za-z0-9._-]+", req)[0], seen)
    return seen


def _imports(tree: ast.AST, package: str, in_functions: bool) -> set[str]:
    """Absolute names of what `tree` imports (relative imports resolved against `package`), with
    or without the imports inside function bodies."""
    names = set()
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not in_functions:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            names |= {base} | {f"{base}.{a.name}" for a in node.names}
        names |= _imports(node, package, in_functions)
    return names


def _service_imports(entry: str, packed: list[str]) -> set[str]:
    """Top-level names of the third-party modules the service's code imports: everything imported
    by `entry` and the packed modules it reaches. The service's own package is followed into its
    function bodies (it imports onnxruntime where it uses it); the packages it shares with training
    (`zoo`) only at module level, since they keep torch inside functions the service never calls
    (tests/test_service.py checks that the running server never imports torch)."""
    todo, seen, found = [entry], set(), set()
    while todo:
        name = todo.pop()
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]   # parent packages run first
        if name in seen:
            continue
        seen.add(name)
        path = REPO.joinpath(*parts).with_suffix(".py")
        if not path.exists():
            path = REPO.joinpath(*parts, "__init__.py")
        if not path.exists():
            continue   # an attribute (from zoo.spec import CLASSES), not a module
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        own = parts[0] == entry.split(".")[0]
        for imported in _imports(ast.parse(path.read_text()), package, in_functions=own):
            if imported.split(".")[0] in packed:
                todo.append(imported)
            else:
                found.add(imported.split(".")[0])
    return found


@pytest.mark.parametrize("bentofile", ["bentofile.yaml", "bentofile-cpu.yaml"])
def test_bentofile_installs_what_the_service_imports(bentofile):
    """Every third-party module the packed code imports comes from the bentofile's packages (or
    what they require), and every package is pinned as in pyproject.toml."""
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    config = _bentofile(bentofile)
    pins = _pins(config["python"]["packages"])
    project = _pins(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])
    for name, version in pins.items():
        twin = "onnxruntime-gpu" if name == "onnxruntime" else name
        assert project.get(twin) == version, f"{bentofile}: {name}=={version}, pyproject.toml pins {twin}=={project.get(twin)}"
    installed = set()
    for name in pins:
        _requires("onnxruntime-gpu" if name == "onnxruntime" else name, installed)
    packed = [p.split("/")[0] for p in config["include"]]
    distributions = importlib.metadata.packages_distributions()
    missing = []
    entry = config["service"].split(":")[0]
    for module in sorted(_service_imports(entry, packed) - set(sys.stdlib_module_names) - {"__future__", ""}):
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in distributions.get(module, [module])}
        if not dists & installed:
            missing.append(f"{module} (from {', '.join(sorted(dists))})")
    assert not missing, f"{bentofile} does not install what {', '.join(packed)} import: {missing}"


def test_bentofiles_differ_only_in_the_runtime():
    gpu, cpu = _bentofile("bentofile.yaml"), _bentofile("bentofile-cpu.yaml")
    assert gpu["service"] == cpu["service"] and gpu["include"] == cpu["include"] and gpu["docker"] == cpu["docker"]
    gpu_pins, cpu_pins = _pins(gpu["python"]["packages"]), _pins(cpu["python"]["packages"])
    assert gpu_pins.pop("onnxruntime-gpu") == cpu_pins.pop("onnxruntime")
    assert gpu_pins == cpu_pins
    assert "torch" not in gpu_pins


# ---------------------------------------------------------------------------------------------
# fixtures: the backend, the image, the export it must agree with, the running container

@pytest.fixture(scope="module")
def backend(container_backend) -> str:
    return container_backend


@pytest.fixture(scope="module")
def built(built_image):
    return built_image


@pytest.fixture(scope="module")
def manifest(built) -> dict:
    return export_manifest(built[2])


@pytest.fixture(scope="module")
def sessions(built, manifest) -> dict:
    return onnx_sessions(built[2], manifest)


class Container:
    def __init__(self, backend: str, image: str) -> None:
        self.backend, self.image, self.port = backend, image, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = f"fashion-zoo-test-{os.getpid()}-{self.port}"

    def cmd(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([self.backend, *args], capture_output=True, text=True,
                              env=backend_env(self.backend), **kw)

    def start(self) -> float:
        """Seconds from `run` to /readyz answering 200."""
        start = time.monotonic()
        out = self.cmd("run", "-d", "--name", self.name, "--network", "host", self.image,
                       "--host", "127.0.0.1", "--port", str(self.port), timeout=120)
        assert out.returncode == 0, f"{self.backend} run failed: {out.stderr}"
        return wait_ready(self.url, self.running, start, 180, self.logs, "the container", poll=0.2)

    def running(self) -> bool:
        return self.cmd("inspect", "--format", "{{.State.Running}}", self.name).stdout.strip() == "true"

    def logs(self) -> str:
        out = self.cmd("logs", self.name)
        return out.stdout + out.stderr

    def exec(self, *args: str) -> subprocess.CompletedProcess:
        return self.cmd("exec", self.name, *args, timeout=60)

    def remove(self) -> None:
        self.cmd("rm", "-f", "-t", "0", self.name)


@pytest.fixture(scope="module")
def container(backend, built):
    c = Container(backend, built[0])
    try:
        seconds = c.start()
        print(f"\n{c.image}: /readyz answered 200 {seconds:.1f} s after `{backend} run`")
        yield c
    finally:
        c.remove()


@pytest.fixture(scope="module")
def client(container):
    with httpx.Client(base_url=container.url, timeout=60) as c:
        yield c


# ---------------------------------------------------------------------------------------------
# through the container

@pytest.mark.container
@pytest.mark.parametrize("upload", ["fashion_png", "product_photo"])
def test_every_model_labels_as_the_local_onnx_run(client, manifest, sessions, upload, request):
    check_labels(client, manifest, sessions, request.getfixturevalue(upload))


@pytest.mark.container
def test_models_are_the_export_and_the_runtime_is_named(client, container, manifest, built):
    body = client.get("/models").json()
    assert {n: m["sha256"] for n, m in body["models"].items()} == \
        {n: e["sha256"] for n, e in manifest["models"].items()}
    package = RUNTIME_PACKAGE[built[1]]
    assert body["runtime"]["package"] == package, body["runtime"]
    assert "CPUExecutionProvider" in body["runtime"]["available_providers"]
    assert f"runtime {package} {body['runtime']['version']}" in container.logs()


@pytest.mark.container
@pytest.mark.parametrize("data, status", [(b"not an image at all", 400), (b"", 400)])
def test_bad_upload_is_a_4xx(client, fashion_png, data, status):
    r = classify(client, data)
    assert r.status_code == status, r.text
    assert "error" in r.json()
    assert classify(client, fashion_png).status_code == 200   # and it keeps serving


@pytest.mark.container
def test_runs_as_a_user_without_torch(container):
    uid = container.exec("id", "-u")
    assert uid.returncode == 0 and uid.stdout.strip() not in ("", "0"), uid.stdout + uid.stderr
    torch = container.exec("python", "-c", "import torch")
    assert torch.returncode != 0 and "No module named 'torch'" in torch.stderr, torch.stdout + torch.stderr


@pytest.mark.container
def test_sigterm_stops_it_cleanly(container):
    """Last: `stop -t 10` sends the stop signal, SIGTERM (what Kubernetes sends first too), then
    SIGKILL if the server is still running after the usual 10 s grace period. The server must end on
    the SIGTERM, with status 0: the SIGKILL would end it with 137."""
    stop_signal = container.cmd("inspect", "--format", "{{.Config.StopSignal}}", container.name).stdout.strip()
    assert stop_signal in ("", "15", "TERM", "SIGTERM"), f"the image's stop signal is {stop_signal}"  # "": the default
    stopped = container.cmd("stop", "-t", "10", container.name, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    waited = container.cmd("wait", container.name, timeout=30)
    assert waited.stdout.strip() == "0", f"exit status {waited.stdout.strip()}:\n{container.logs()[-3000:]}"
