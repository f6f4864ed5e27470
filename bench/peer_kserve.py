"""make bench's KServe peer: the same ONNX model as the zoo's `/v2/models/<name>/infer`, served by
KServe's own model server as KServe documents a custom model (a `kserve.Model` subclass, then
`kserve.ModelServer().start([model])`), from its own venv (the `kserve` package needs pandas 2).

    FASHION_ZOO_PEER_DIR=<fashion-zoo model directory> .venv-kserve/bin/python -m bench.peer_kserve \\
        --http_port 3004 --workers 2 --enable_grpc false --enable_latency_logging false
    curl -H 'Content-Type: application/json' -d @request.json http://127.0.0.1:3004/v2/models/batchnorm/infer

The flags are KServe's own (read from sys.argv); KServe has none for uvicorn's access log or its two
`kserve.trace` lines per request, which LOG_CONFIG turns off. The model: bench/peer_model.py's session,
one preprocessed FP32 input `image` [N, 1, 28, 28] and the zoo's V2 outputs, `logits` and
`probabilities`, as JSON or binary tensors as the request asks. KServe listens on 0.0.0.0 (no host flag).
"""
from __future__ import annotations

import copy
import logging.config
import os
from typing import Any

import kserve
import numpy as np
from kserve.errors import InvalidInput
from kserve.logging import KSERVE_LOG_CONFIG
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.utils.utils import generate_uuid

from service.results import softmax

from .peer_model import DIR_ENV, MODEL_ENV, PeerModel

# KServe's logging without a line per request, applied at import, so also in every worker KServe
# spawns. Not with --log_config_file: KServe 0.21 starts a worker that replaces one it judged hung
# without that file, and it logs every request.
LOG_CONFIG: dict[str, Any] = copy.deepcopy(KSERVE_LOG_CONFIG)
LOG_CONFIG["loggers"]["uvicorn.access"]["handlers"] = []  # no handler: uvicorn skips its access log
LOG_CONFIG["loggers"]["kserve.trace"]["level"] = "WARNING"
logging.config.dictConfig(LOG_CONFIG)


class OnnxModel(kserve.Model):
    """One model of the stored zoo, loaded at construction as KServe's custom-model guide does."""

    def __init__(self, name: str, root: str) -> None:
        super().__init__(name)
        self.root = root
        self.peer: PeerModel | None = None
        self.load()

    def load(self) -> bool:
        self.peer = PeerModel(self.root, self.name)
        self.ready = True
        return self.ready

    # With --workers N > 1 KServe pickles the loaded model into each worker process it spawns; an
    # onnxruntime session does not pickle, so each worker opens its own (as each zoo worker does).
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "peer": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.load()

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        assert self.peer is not None
        tensor = payload.get_input_by_name(self.peer.input)
        if tensor is None or tensor.datatype != "FP32":
            raise InvalidInput(f"send one FP32 input {self.peer.input!r} of shape [N, 1, 28, 28]")
        x = tensor.as_numpy()
        logits = self.peer.session.run([self.peer.output], {self.peer.input: x})[0]
        outputs = [InferOutput("logits", list(logits.shape), "FP32", logits),
                   InferOutput("probabilities", list(logits.shape), "FP32", softmax(logits).astype(np.float32))]
        return InferResponse(response_id=payload.id or generate_uuid(), model_name=self.name,
                             infer_outputs=outputs, use_binary_outputs=payload.use_binary_outputs,
                             requested_outputs=payload.request_outputs)


def main() -> None:
    model = OnnxModel(os.environ.get(MODEL_ENV, "batchnorm"), os.environ[DIR_ENV])
    kserve.ModelServer().start([model])


if __name__ == "__main__":
    main()
