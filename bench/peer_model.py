"""The model behind make bench's peer servers (bench/peer_fastapi.py, bench/peer_litserve.py): one
model of the stored zoo, run as a user would run it by hand, answering exactly the zoo's body.

The same ONNX file as the zoo serves (from the `fashion-zoo` model directory the zoo loads, named by
FASHION_ZOO_PEER_DIR, read by `zoo.manifest.read_manifest`), the same onnxruntime session
(`service.runtime.create_session` on the CPU: one intra-op and one inter-op thread), the model's
own preprocessing from the manifest (`zoo.spec.preprocess`, so the logits are the zoo's bit for
bit) and the answer made by the zoo's own `service.results.results` (model, label, class_id,
confidence, top 3, probabilities, logits): like for like, a peer that answered less would do less
work. Nothing else of the zoo's (its upload parsing, its fast PNG path,
its limits) is used.
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

    def classify(self, data: bytes) -> dict[str, Any]:
        """An image file's bytes -> the zoo's answer for this model."""
        from PIL import Image

        from service.params import DEFAULT_TOP_K
        from service.results import results
        from zoo.spec import preprocess

        with Image.open(io.BytesIO(data)) as image:
            x = preprocess(image, self.spec)[None]  # (1, 1, size, size)
        logits = self.session.run([self.output], {self.input: x.astype(np.float32, copy=False)})[0]
        return results(self.name, logits, self.classes, DEFAULT_TOP_K)[0]
