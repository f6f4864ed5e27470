"""The model behind make bench's peer servers (bench/peer_fastapi.py, bench/peer_litserve.py,
bench/peer_kserve.py): one model of the stored zoo, run as a user would run it by hand.

The zoo's ONNX file (from the `fashion-zoo` model directory named by FASHION_ZOO_PEER_DIR), its
onnxruntime session (`service.runtime.create_session` on the CPU), its manifest preprocessing
(`zoo.spec.preprocess`) and its answer (`service.results.results`): like for like, since a peer that
answered less would do less work. Nothing else of the zoo's (upload parsing, fast PNG path, limits).
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from zoo.manifest import read_manifest

DIR_ENV, MODEL_ENV = "FASHION_ZOO_PEER_DIR", "FASHION_ZOO_PEER_MODEL"


class PeerModel:
    def __init__(self, root: str | os.PathLike, name: str) -> None:
        from service.runtime import CPU, Device, create_session

        self.name, entry = name, read_manifest(root, str(root))["models"][name]
        self.spec, self.classes = entry["preprocess"], entry["classes"]
        path = Path(root) / entry["onnx"]
        self.session = create_session(path.read_bytes(), Device([CPU], "the peers run on the CPU"), path, name)
        self.input, self.output = entry["input"]["name"], entry["output"]["name"]

    @classmethod
    def from_env(cls) -> "PeerModel":
        return cls(os.environ[DIR_ENV], os.environ.get(MODEL_ENV, "batchnorm"))

    def tensor(self, data: bytes) -> np.ndarray:
        """An image file's bytes -> the model's input, preprocessed as the manifest says: (1, 1, size, size)."""
        from PIL import Image

        from zoo.spec import preprocess

        with Image.open(io.BytesIO(data)) as image:
            return preprocess(image, self.spec)[None].astype(np.float32, copy=False)

    def classify(self, data: bytes) -> dict[str, Any]:
        """An image file's bytes -> the zoo's answer for this model."""
        from service.params import DEFAULT_TOP_K
        from service.results import results

        logits = self.session.run([self.output], {self.input: self.tensor(data)})[0]
        return results(self.name, logits, self.classes, DEFAULT_TOP_K)[0]
