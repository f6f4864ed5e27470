"""make bench's KServe peer: the same ONNX model as the zoo's `/v2/models/<name>/infer`, served by
KServe's own Python model server as KServe documents a custom model: a `kserve.Model` subclass,
loaded, then `kserve.ModelServer().start([model])`.

    FASHION_ZOO_PEER_DIR=<fashion-zoo model directory> .venv-kserve/bin/python -m bench.peer_kserve \\
        --http_port 3004 --workers 2 --enable_grpc false --enable_latency_logging false
    curl -H 'Content-Type: application/json' -d @request.json http://127.0.0.1:3004/v2/models/batchnorm/infer

It runs in its own venv (make .venv-kserve/.installed): the `kserve` package needs pandas 2, the
project pins pandas 3. The command line is KServe's (ModelServer's documented flags, which KServe
reads from sys.argv when `kserve` is imported); bench/peers.py gives it the zoo's number of worker
processes, no gRPC port and no latency line per request. KServe has no flag for uvicorn's access log
nor for its TimingMiddleware's two `kserve.trace` lines per request; LOG_CONFIG, applied when this
module is imported, turns both off (see there why not with --log_config_file).

The model: the ONNX file and onnxruntime session options of bench/peer_model.py (the zoo's), one
FP32 input `image` [N, 1, 28, 28] (already preprocessed, as the zoo's V2 `image` input), and the
zoo's two V2 outputs, `logits` and `probabilities` (service.results.softmax), as JSON or as binary
tensors as the request asks (KServe's InferResponse does the encoding). KServe listens on 0.0.0.0
(it has no flag for the host).
"""
from __future__ import annotations

import logging.config
import os
from typing import Any

import kserve
import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.utils.utils import generate_uuid

from service.results import softmax

from .peer_model import DIR_ENV, MODEL_ENV, PeerModel

# KServe's logging (kserve.logging.KSERVE_LOG_CONFIG) without a line per request: uvicorn's access
# logger has no handler (uvicorn then skips its access log, as with `uvicorn --no-access-log`) and
# kserve.trace logs warnings only. Applied at import, so in KServe's parent process and in every worker
# it spawns (spawn imports this module again in each): KServe's configure_logging leaves logging
# configured by the user as it is. Not with --log_config_file: KServe 0.21 starts a worker that replaces
# one it judged hung (no answer to its 5 s ping, which a slow start on a loaded machine gets) without
# that file, so the new worker logs every request with KServe's defaults.
LOG_CONFIG: dict[str, Any] = {
    "version": 1, "disable_existing_loggers": False,
    "formatters": {"kserve": {"format": "%(asctime)s %(process)s %(name)s %(levelname)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "kserve", "stream": "ext://sys.stderr"}},
    "loggers": {"kserve": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
                "kserve.trace": {"level": "WARNING"},
                "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
                "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False}},
}
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
