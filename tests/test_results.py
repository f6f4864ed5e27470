"""service.results: the answer built from logits, the same for an image alone or in a batch."""
import numpy as np

from service.results import result, results, softmax

CLASSES = [f"class {i}" for i in range(10)]


def reference(logits: np.ndarray, top_k: int) -> dict:
    """The answer by its definition: softmax, then classes by probability, ties in class order."""
    probs = softmax(logits)
    order = np.argsort(-probs, kind="stable")
    return {"model": "m", "label": CLASSES[order[0]], "class_id": int(order[0]), "confidence": float(probs[order[0]]),
            "top": [{"label": CLASSES[i], "class_id": int(i), "probability": float(probs[i])} for i in order[:top_k]],
            "probabilities": {c: float(p) for c, p in zip(CLASSES, probs)},
            "logits": [float(x) for x in logits]}


def test_results_are_the_definition_alone_and_in_a_batch():
    rng = np.random.default_rng(0)
    for scale in (0.01, 1, 30):
        logits = (rng.standard_normal((500, 10)) * scale).astype(np.float32)
        logits[::7, 3] = logits[::7, 5]  # ties keep class order
        logits[::11] = 0
        for k in (1, 3, 10):
            batch = results("m", logits, CLASSES, k)
            for row, got in zip(logits, batch):
                want = reference(row, k)
                assert got == want == result("m", row, CLASSES, k)
