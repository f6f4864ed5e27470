"""Numerical parity of an ONNX file with its PyTorch model, on real images, at several batch sizes."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

MAX_ABS_DIFF = 1e-4
BATCH_SIZES = (1, 64)


@torch.inference_mode()
def check_parity(model: nn.Module, onnx_path: Path, images: torch.Tensor) -> dict[str, Any]:
    """Max |logit difference| and argmax agreement of PyTorch (eval) vs onnxruntime on `images`."""
    import onnxruntime as ort

    model.eval()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    reference = model(images).numpy()
    worst, agree, per_batch = 0.0, 1.0, {}
    for bs in BATCH_SIZES:
        outs = [session.run(None, {input_name: images[i:i + bs].numpy()})[0] for i in range(0, len(images), bs)]
        got = np.concatenate(outs)
        diff = float(np.abs(got - reference).max())
        agreement = float((got.argmax(1) == reference.argmax(1)).mean())
        per_batch[str(bs)] = {"max_abs_diff": diff, "argmax_agreement": agreement}
        worst, agree = max(worst, diff), min(agree, agreement)
    return {"max_abs_diff": worst, "argmax_agreement": agree, "samples": len(images),
            "batch_sizes": list(BATCH_SIZES), "by_batch_size": per_batch}


def parity_problems(parity: dict[str, Any]) -> list[str]:
    """Why `parity` fails the export (empty when it passes)."""
    problems = []
    if not parity["max_abs_diff"] <= MAX_ABS_DIFF:  # also catches NaN
        problems.append(f"max abs diff {parity['max_abs_diff']:.3g} > {MAX_ABS_DIFF:g}")
    if parity["argmax_agreement"] < 1.0:
        problems.append(f"argmax agreement {100 * parity['argmax_agreement']:.2f}% < 100%")
    return problems
