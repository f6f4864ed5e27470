"""The exported zoo's on-disk format: one home for its names and the one reader that verifies it.

An exported zoo is a folder holding `manifest.json` (format `MANIFEST_FORMAT`) and the files it
names, each with its sha256 (artifacts/, the store's `fashion-zoo`, weights/; docs/export.md). Each
reader's `source` is how its errors name what was read and `fix` what to do about it. Torch-free.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .errors import ZooError

PROJECT = "fashion-zoo"   # what the manifest's "zoo", the ONNX metadata and the store labels say
STORE_NAME = PROJECT      # the BentoML model that holds the exported zoo
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
# The manifest entry's key holding the sha256 of each file it names.
SHA256_KEYS = {"onnx": "sha256", "state_dict": "state_dict_sha256"}
EXPORT_AGAIN = "re-run `make export`"


def installed_version(dist: str = PROJECT, missing: str = "unknown") -> str:
    """The installed version of `dist` (this project by default); `missing` where it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return missing


class ZooLoadError(ZooError):
    """An exported zoo (its manifest or a file it names) cannot be used; the message says how to fix it."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_text(manifest: dict[str, Any]) -> str:
    """The manifest as every writer stores it (export, publish-weights, the model store), so a
    manifest read and written again is byte-identical."""
    return json.dumps(manifest, indent=2) + "\n"


def read_json(root: str | os.PathLike, source: str, fix: str = EXPORT_AGAIN) -> dict[str, Any]:
    """`root`/manifest.json parsed: a dict with a "models" dict, else ZooLoadError."""
    path = Path(root) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ZooLoadError(f"{source}: cannot read {path} ({type(e).__name__}: {e}); {fix}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), dict):
        raise ZooLoadError(f"{source}: {path} is not a {PROJECT} manifest (no models); {fix}")
    return manifest


def read_manifest(root: str | os.PathLike, source: str, fix: str = EXPORT_AGAIN) -> dict[str, Any]:
    """`root`/manifest.json, checked: this format, some models, a default and an auto entry among them."""
    manifest = read_json(root, source, fix)
    if manifest.get("format") != MANIFEST_FORMAT:
        problem = f"format is not {MANIFEST_FORMAT}"
    elif not manifest["models"]:
        problem = "it lists no models"
    elif manifest.get("default") not in manifest["models"]:
        problem = f"its default {manifest.get('default')!r} is not one of its models"
    elif "auto" in manifest and not _auto_ok(manifest["auto"], manifest["models"]):
        problem = f"its auto entry {manifest['auto']!r} does not name two of its models and a rule"
    else:
        return manifest
    raise ZooLoadError(f"{source}: {Path(root) / MANIFEST} is not a {PROJECT} manifest ({problem}); {fix}")


def _auto_ok(auto: Any, models: dict[str, Any]) -> bool:
    from .auto import FASHION_MNIST, PHOTO, RULE

    return (isinstance(auto, dict) and isinstance(auto.get("models"), dict)
            and all(auto["models"].get(k) in models for k in (FASHION_MNIST, PHOTO))
            and isinstance(auto.get("rule"), dict) and set(RULE) <= set(auto["rule"]))


def check_sha256(data: bytes, expected: Any, path: str | os.PathLike, source: str, fix: str = EXPORT_AGAIN) -> None:
    """Raise ZooLoadError unless `data` (the file `path`) has the sha256 its manifest says, `expected`."""
    digest = sha256(data)
    if digest != expected:
        raise ZooLoadError(f"{source}: {path}: sha256 {digest[:12]}... does not match its manifest "
                           f"({str(expected)[:12]}...): the file is corrupt or was changed; {fix}")


def read_file(root: str | os.PathLike, name: str, entry: dict[str, Any], field: str, source: str,
              fix: str = EXPORT_AGAIN) -> bytes:
    """The bytes of the file that model `name`'s manifest `entry` names under `field` ("onnx" or
    "state_dict"), read once and checked against its sha256."""
    filename = entry.get(field)
    # The manifest names files; never follow one out of its folder.
    if not isinstance(filename, str) or Path(filename).name != filename or filename.startswith("."):
        raise ZooLoadError(f"{source}: model {name!r} names the file {filename!r}, not a plain file name "
                           f"in {root}; {fix}")
    path = Path(root) / filename
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ZooLoadError(f"{source}: cannot read {path} ({type(e).__name__}: {e.strerror or e}); {fix}") from None
    check_sha256(data, entry.get(SHA256_KEYS[field]), path, source, fix)
    return data


def read_verified(root: str | os.PathLike, source: str, fix: str = EXPORT_AGAIN,
                  files: str | os.PathLike | None = None) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest in `root` and every model's ONNX bytes, each checked against its sha256; the
    files are in `files` when given (an export's onnx/ folder), else beside the manifest."""
    manifest = read_manifest(root, source, fix)
    files = root if files is None else files
    return manifest, {n: read_file(files, n, e, "onnx", source, fix) for n, e in manifest["models"].items()}
