"""ONNX export of the zoo with proven parity, and the manifest (`zoo.manifest`'s format). Putting
the export in the BentoML model store is `release.store`'s job (`make export` runs both).

    python -m export --artifacts artifacts --data-dir data     # what `make export` runs
"""
from .export import export_all

__all__ = ["export_all"]
