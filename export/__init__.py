"""ONNX export of the zoo with proven parity, and the manifest: `python -m export` (export/__main__.py)."""
