"""ONNX export of the zoo with proven parity, and the manifest (`zoo.manifest`'s format); the
export is put in the BentoML model store by `release.store`.

    python -m export --artifacts artifacts --data-dir data     # what `make export` runs
"""
from .export import export_all

__all__ = ["export_all"]
