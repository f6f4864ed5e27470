"""Logits -> the JSON a client gets: label, confidence, top-k, all ten probabilities, and the logits."""
from __future__ import annotations

from typing import Any

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities (float64) along the last axis, computed stably."""
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def result(model: str, logits: np.ndarray, classes: list[str], top_k: int) -> dict[str, Any]:
    """One image's result from one model; `logits` is that image's (classes,) row."""
    probs = softmax(logits)
    # Stable sort: equal probabilities keep class order, so the answer never depends on the run.
    order = np.argsort(-probs, kind="stable")
    best = int(order[0])
    return {
        "model": model,
        "label": classes[best],
        "class_id": best,
        "confidence": float(probs[best]),
        "top": [{"label": classes[i], "class_id": int(i), "probability": float(probs[i])}
                for i in order[:top_k]],
        "probabilities": {c: float(p) for c, p in zip(classes, probs)},
        # The raw model output, exactly as onnxruntime returned it (float32 -> JSON number).
        "logits": [float(v) for v in logits],
    }
