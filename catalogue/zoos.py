"""Which exported zoo a catalogue job runs: the BentoML store's `fashion-zoo` (what `make serve`
serves) or a folder holding a manifest (the shipped `weights/`, or a store version's folder).

Read and verified once, in the driver, by the service's own reader (`zoo.manifest.read_verified`:
the manifest and every ONNX file against its sha256); the actors get the verified bytes, so the
nodes of a cluster need no copy of the store, and check the sha256 again when they load them.
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
    root: Path
    manifest: dict[str, Any]
    files: dict[str, bytes]    # model name -> its verified ONNX bytes
    manifest_sha256: str       # of manifest.json as stored: names this exact zoo in the output


def _store_model(tag: str):
    """The store's model for `tag`, or None when the store has no such model."""
    import bentoml

    try:
        return bentoml.models.get(tag)
    except bentoml.exceptions.BentoMLException:  # NotFound, or not a tag at all
        return None


def resolve(spec: str | None) -> ZooFiles:
    """`spec`: a folder with a manifest.json, a store tag (fashion-zoo:VERSION), or None: the store's
    latest fashion-zoo if it has one, else the shipped weights (the versions `make serve` would serve
    are the same unless an export is newer than the shipped import)."""
    if spec and Path(spec).is_dir():
        return _read(Path(spec), str(Path(spec)))
    if spec:
        tag = spec if ":" in spec else f"{spec}:latest"
        model = _store_model(tag)
        if model is None:
            raise ZooError(f"--zoo {spec!r}: not a folder with a {MANIFEST} and no model {tag} in the "
                           f"BentoML model store ({os.environ.get('BENTOML_HOME', '~/bentoml')}); give a "
                           f"tag `bentoml models list` shows, or a folder such as weights/")
        return _read(Path(model.path), str(model.tag))
    model = _store_model(f"{STORE_NAME}:latest")
    if model is not None:
        return _read(Path(model.path), str(model.tag))
    root = weights_dir()
    if not (root / MANIFEST).exists():
        raise ZooError(f"no {STORE_NAME} in the BentoML model store and no shipped weights in {root}; "
                       f"run `make train-all export` first, or give --zoo")
    return _read(root, f"shipped weights ({root})")


def _read(root: Path, tag: str) -> ZooFiles:
    manifest, files = read_verified(root, tag)  # ZooLoadError (a ZooError) names the file and the fix
    digest = sha256((root / MANIFEST).read_bytes())
    return ZooFiles(tag, root, manifest, files, digest)
