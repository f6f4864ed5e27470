"""Point the overlays at the image `make container` built: its kustomize `images:` entry.

    python -m deploy.k8s.set_image --device cpu                        # what `make k8s-image DEVICE=cpu` runs
    python -m deploy.k8s.set_image --device gpu --registry registry.example.com/ml
    python -m deploy.k8s.set_image --device cpu --tag 7yy4q7honsxl4ax4
    python -m deploy.k8s.set_image --device cpu --print                # the built image; changes nothing

Each image is named once, in its KUSTOMIZATIONS file. This sets its newTag to the bento version
of `<name>:latest` in the container backend (what `make container` built last; --tag names another)
and, with --registry, its newName to `<registry>/<name>`. Never `latest`: a Deployment that says
`latest` runs whatever the registry held when each node pulled. Only those two lines change.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from zoo.fileio import write_atomic

from deploy.containerize import BENTOFILES, ContainerError, backend_env, choose_backend

K8S = Path(__file__).resolve().parent

# The image of each device is named as its bento, by the bentofile's `name:`.
IMAGES = {device: yaml.safe_load((K8S.parents[1] / bentofile).read_text())["name"]
          for device, bentofile in BENTOFILES.items()}
BASE_NAME = "fashion-zoo-service"   # the image base/deployment.yaml and overlays/kserve name
# Where each device's image is named, once.
KUSTOMIZATIONS = {"cpu": K8S / "components" / "cpu-image" / "kustomization.yaml",
                  "gpu": K8S / "overlays" / "gpu" / "kustomization.yaml"}
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def built_version(name: str, backend: str | None = None) -> str:
    """The version tag of the image that `<name>:latest` is in the container backend."""
    backend = choose_backend(backend)
    out = subprocess.run([backend, "image", "inspect", "--format", "{{json .RepoTags}}", f"{name}:latest"],
                         capture_output=True, text=True, env=backend_env(backend))
    if out.returncode != 0:
        raise ContainerError(f"no image {name}:latest in {backend}: build it first "
                             f"(make container{' DEVICE=cpu' if name.endswith('-cpu') else ''})")
    tags = yaml.safe_load(out.stdout) or []
    versions = sorted({t.rsplit(":", 1)[1] for t in tags
                       if t.rsplit(":", 1)[0].rsplit("/", 1)[-1] == name and not t.endswith(":latest")})
    if len(versions) != 1:
        raise ContainerError(f"{name}:latest carries {len(versions)} version tags ({', '.join(versions) or 'none'}); "
                             f"name one with TAG=")
    return versions[0]


def set_image(kustomization: Path, new_name: str, new_tag: str) -> None:
    """Set newName and newTag of the `images:` entry for BASE_NAME in `kustomization`, in place."""
    if new_tag == "latest" or not TAG.fullmatch(new_tag):
        raise ValueError(f"bad image tag {new_tag!r}: a version such as the bento's (never `latest`)")
    text = kustomization.read_text()
    # The entry: its `- name:` line and the lines indented under it (the rest of the file, comments
    # included, stays as it is).
    entries = list(re.finditer(rf"^( *)- +name: *{BASE_NAME} *\n((?:\1 +\S.*\n?)*)", text, re.M))
    if len(entries) != 1:
        raise ValueError(f"{kustomization}: expected one `images:` entry named {BASE_NAME}, found {len(entries)}")
    entry = entries[0]
    lines = entry[2]
    for key, value in (("newName", new_name), ("newTag", new_tag)):
        lines, found = re.subn(rf"^( +{key}:).*$", lambda m: f"{m[1]} {value}", lines, flags=re.M)
        if found != 1:
            raise ValueError(f"{kustomization}: the {BASE_NAME} entry needs both newName and newTag lines")
    write_atomic(kustomization, text[:entry.start(2)] + lines + text[entry.end(2):])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=sorted(IMAGES), required=True, help="which image (and so which overlays)")
    p.add_argument("--registry", default="", help="where the image is pushed, e.g. registry.example.com/ml")
    p.add_argument("--tag", default="", help="the version tag (default: the one of <image>:latest here)")
    p.add_argument("--print", action="store_true", help="only print the built image (name:version); change nothing")
    args = p.parse_args(argv)
    name = IMAGES[args.device]
    try:
        tag = args.tag or built_version(name, os.environ.get("CONTAINER_BACKEND") or None)
        if args.print:
            print(f"{name}:{tag}")
            return 0
        new_name = f"{args.registry.rstrip('/')}/{name}" if args.registry else name
        kustomization = KUSTOMIZATIONS[args.device]
        set_image(kustomization, new_name, tag)
    except (ContainerError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{kustomization.relative_to(K8S.parent.parent)}: image {new_name}:{tag}")
    if args.registry:
        print(f"push it: podman push {name}:{tag} {new_name}:{tag}   (or docker tag + docker push)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
