"""Which exported zoo a catalogue job runs: the BentoML store's `fashion-zoo` or a folder holding a
manifest (weights/). Read and verified once, in the driver, by the service's reader; the actors get
the verified bytes, so the nodes of a cluster need no copy of the store.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.manifest import MANIFEST, STORE_NAME, read_verified, sha256
from zoo.pretrained import weights_dir


@dataclass
class ZooFiles:
    tag: str                   # "fashion-zoo:<version>" or the folder it was read from
    manifest: dict[str, Any]
    files: dict[str, bytes]    # model name -> its verified ONNX bytes
    manifest_sha256: str       # of manifest.json as stored: names this exact zoo in the output


def resolve(spec: str | None) -> ZooFiles:
    """`spec`: a folder with a manifest.json, a store tag (fashion-zoo:VERSION), or None: the store's
    latest fashion-zoo if it has one, else the shipped weights (what `make serve` would serve)."""
    if spec and Path(spec).is_dir():
        return _read(Path(spec), str(Path(spec)))
    tag = (spec if ":" in spec else f"{spec}:latest") if spec else f"{STORE_NAME}:latest"
    import bentoml

    try:
        model = bentoml.models.get(tag)
        return _read(Path(model.path), str(model.tag))
    except bentoml.exceptions.BentoMLException:  # NotFound, or not a tag at all
        pass
    if spec:
        raise ZooError(f"--zoo {spec!r}: not a folder with a {MANIFEST} and no model {tag} in the "
                       f"BentoML model store ({os.environ.get('BENTOML_HOME', '~/bentoml')}); give a "
                       f"tag `bentoml models list` shows, or a folder such as weights/")
    root = weights_dir()
    if not (root / MANIFEST).exists():
        raise ZooError(f"no {STORE_NAME} in the BentoML model store and no shipped weights in {root}; "
                       f"run `make train-all export` first, or give --zoo")
    return _read(root, f"shipped weights ({root})")


def _read(root: Path, tag: str) -> ZooFiles:
    manifest, files = read_verified(root, tag)  # ZooLoadError (a ZooError) names the file and the fix
    return ZooFiles(tag, manifest, files, sha256((root / MANIFEST).read_bytes()))
