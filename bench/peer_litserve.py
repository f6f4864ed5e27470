"""make bench's LitServe peer: the same model and answer as bench/peer_model.py, served by LitServe
as its documentation shows, on the CPU; `--workers` sets its inference processes (`workers_per_device`).

    FASHION_ZOO_PEER_DIR=<fashion-zoo model directory> python -m bench.peer_litserve --port 3003 --workers 2
    curl -F image=@shoe.png http://127.0.0.1:3003/classify
"""
from __future__ import annotations

import argparse
from typing import Any

import litserve as ls

from .peer_model import PeerModel


class Classify(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.model = PeerModel.from_env()

    def decode_request(self, request):  # unannotated: LitServe passes the request and reads its form
        return request["image"].file.read()  # the multipart form's file

    def predict(self, data: bytes) -> dict[str, Any]:  # LitServe returns the dict as the JSON answer
        return self.model.classify(data)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peer_litserve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3003)
    parser.add_argument("--workers", type=int, default=1, help="LitServe's workers_per_device")
    args = parser.parse_args()
    server = ls.LitServer(Classify(api_path="/classify"), accelerator="cpu", workers_per_device=args.workers)
    server.run(host=args.host, port=args.port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
