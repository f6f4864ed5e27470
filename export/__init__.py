"""ONNX export of the zoo with proven parity, the manifest, and the BentoML model store.

    python -m export --artifacts artifacts --data-dir data     # what `make export` runs
"""
from .export import export_all

__all__ = ["export_all"]
