"""make bench's hand-written peer: the FastAPI server a user would write for one ONNX model, on
uvicorn[standard], answering exactly the zoo's body (bench/peer_model.py): an `UploadFile` parameter
and a returned dict. Each worker process loads the model at import.

    FASHION_ZOO_PEER_DIR=<fashion-zoo model directory> \\
        uvicorn bench.peer_fastapi:app --workers 2 --no-access-log --port 3002
    curl -F image=@shoe.png http://127.0.0.1:3002/classify
"""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI, UploadFile

from .peer_model import PeerModel

model = PeerModel.from_env()
app = FastAPI(title="peer: FastAPI + onnxruntime")


@app.post("/classify")
async def classify(image: UploadFile) -> dict[str, Any]:
    return model.classify(await image.read())


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}
