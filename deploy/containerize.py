"""Build the service's container image: `bentoml build`, then `bentoml containerize`.

    python deploy/containerize.py                  # GPU image (bentofile.yaml), what `make container` runs
    python deploy/containerize.py --device cpu     # CPU image (bentofile-cpu.yaml)
    CONTAINER_BACKEND=podman python deploy/containerize.py

The backend is the first that works here: a Docker daemon that answers, else podman (run with
deploy/containers.conf unless CONTAINERS_CONF is set); CONTAINER_BACKEND= names one. Where no
container registry can be reached, the base image is made locally first (deploy/base_image.sh,
reused when present); where one can, the build pulls it as usual. The image is tagged
`<bento name>:<bento version>` and `<bento name>:latest`; the last line printed is the image name.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent
REPO = DEPLOY.parent
BENTOFILES = {"gpu": "bentofile.yaml", "cpu": "bentofile-cpu.yaml"}
BACKENDS = ("docker", "podman")
REGISTRY = "https://registry-1.docker.io/v2/"   # where python:3.11-slim comes from


class ContainerError(Exception):
    """What is missing and how to get it."""


def backend_env(backend: str) -> dict[str, str]:
    """The environment a backend command runs in: podman gets deploy/containers.conf."""
    env = dict(os.environ)
    if backend == "podman":
        env.setdefault("CONTAINERS_CONF", str(DEPLOY / "containers.conf"))
    return env


def backend_works(backend: str) -> tuple[bool, str]:
    """(usable, why not): docker needs a daemon that answers; podman needs to run at all."""
    if shutil.which(backend) is None:
        return False, f"{backend} is not installed"
    try:
        out = subprocess.run([backend, "info"], capture_output=True, text=True, timeout=30,
                             env=backend_env(backend))
    except subprocess.TimeoutExpired:
        return False, f"`{backend} info` did not answer in 30 s"
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return False, f"`{backend} info` failed: {last}"
    return True, ""


def choose_backend(wanted: str | None = None) -> str:
    """CONTAINER_BACKEND if given (and working), else the first of docker, podman that works."""
    candidates = [wanted] if wanted else list(BACKENDS)
    if wanted and wanted not in BACKENDS:
        raise ContainerError(f"Unknown CONTAINER_BACKEND {wanted!r}; choose one of: {', '.join(BACKENDS)}")
    why = []
    for backend in candidates:
        ok, reason = backend_works(backend)
        if ok:
            return backend
        why.append(reason)
    raise ContainerError(
        "no container backend works here (" + "; ".join(why) + "). Install one: podman "
        "(`apt-get install podman buildah runc`; no daemon needed) or Docker "
        "(https://docs.docker.com/engine/install/, with its daemon running)")


def registry_reachable(timeout: float = 5.0) -> bool:
    """Whether Docker Hub's registry answers HTTPS (401 to an anonymous /v2/ counts: it is there)."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(REGISTRY, timeout=timeout)
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False
    return True


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def bentoml_bin() -> str:
    return str(Path(sys.executable).with_name("bentoml"))


def build_bento(bentofile: str) -> str:
    """`bentoml build -f bentofile`; the bento's tag."""
    print("+ bentoml build -f", bentofile, flush=True)
    out = subprocess.run([bentoml_bin(), "build", "-f", bentofile, "--output", "tag"], cwd=REPO,
                         capture_output=True, text=True)
    tags = [line.split("__tag__:", 1)[1].strip() for line in out.stdout.splitlines() if "__tag__:" in line]
    if out.returncode != 0 or not tags:
        raise ContainerError(f"bentoml build -f {bentofile} failed:\n{out.stderr[-3000:]}")
    return tags[-1]


def ensure_base_image(backend: str) -> None:
    """Where no registry answers, the local stand-in for python:3.11-slim (made, or reused)."""
    if not registry_reachable():
        print("no container registry reachable: the base image is made here", flush=True)
        run(["bash", str(DEPLOY / "base_image.sh"), backend], env=backend_env(backend))


def containerize(bento: str, backend: str, name: str | None = None) -> str:
    """The image of `bento` (name:version), tagged `<name>:<version>` and `<name>:latest` (name:
    the bento's unless given); the first of the two."""
    env = backend_env(backend)
    bento_name, version = bento.split(":")
    name = name or bento_name
    cmd = [bentoml_bin(), "containerize", bento, "--backend", backend,
           "-t", f"{name}:{version}", "-t", f"{name}:latest"]
    if backend == "podman":
        cmd += ["--opt", "network=host"]   # the build's pip install uses the host's network and DNS
    # From the temporary directory's parent: BentoML 1.4.36+ refuses a bento's dockerfile_template
    # unless its temporary build context lies under the working directory ("Accessing file outside
    # of current working directory is not allowed", bentoml/BentoML#5566); cwd=REPO once fixed.
    run(cmd, cwd=tempfile.gettempdir(), env=env)
    return f"{name}:{version}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=sorted(BENTOFILES), default="gpu",
                   help="gpu: onnxruntime-gpu with its CUDA wheels (bentofile.yaml); cpu: onnxruntime (bentofile-cpu.yaml)")
    p.add_argument("--backend", default=os.environ.get("CONTAINER_BACKEND") or None,
                   help=f"one of {', '.join(BACKENDS)} (default: CONTAINER_BACKEND, else the first that works)")
    p.add_argument("--name", help="the image's name (default: the bento's name)")
    args = p.parse_args(argv)
    start = time.monotonic()
    try:
        backend = choose_backend(args.backend)
        print(f"container backend: {backend}", flush=True)
        ensure_base_image(backend)   # first: it is what fails for want of root or debootstrap
        image = containerize(build_bento(BENTOFILES[args.device]), backend, args.name)
    except ContainerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as e:
        print(f"error: {' '.join(map(str, e.cmd))} exited with {e.returncode}", file=sys.stderr)
        return 1
    size = subprocess.run([backend, "image", "inspect", "--format", "{{.Size}}", image],
                          capture_output=True, text=True, env=backend_env(backend)).stdout.strip()
    mb = f", {int(size) / 1e6:,.0f} MB" if size.isdigit() else ""
    print(f"built {image} and {image.rsplit(':', 1)[0]}:latest in {time.monotonic() - start:.0f} s{mb}")
    print(image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
