"""INT8 copies of the zoo's ONNX models: accuracy change and speed-up over fp32, with ONNX Runtime.

Static quantization (quantize_static, QDQ, per-channel int8 weights, uint8 activations, MinMax ranges
on CALIBRATION_IMAGES training images); accuracy on the test images; speed under the inference
section's session options at its batch sizes. The INT8 copies are measured, not shipped.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from .inference import BATCHES, _ort_rate, onnx_file, ort_session, torch_model
from .stats import summary

CALIBRATION_IMAGES = 512


def quantize(src: Path, dst: Path, calib) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"image": calib[i:i + 64]} for i in range(0, len(calib), 64)])

        def get_next(self):
            return next(self.batches, None)

    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def accuracy(sess, x, y) -> float:
    import numpy as np

    pred = np.concatenate([sess.run(None, {"image": x[i:i + 1000]})[0].argmax(1) for i in range(0, len(x), 1000)])
    return float((pred == y).mean())


def run(artifacts: str | os.PathLike, data_dir: str, quick: bool, models: list[str] | None = None,
        ort_settings: dict[str, Any] | None = None, log=print) -> dict[str, Any]:
    """Per model: fp32 and int8 test accuracy, and int8/fp32 images/s by batch size."""
    from training.data.fashion_mnist import RAW_FILES, load_fashion_mnist, raw_dir
    from zoo.registry import list_models

    if any(not (raw_dir(data_dir) / n).exists() for n in RAW_FILES):
        return {"skipped": f"Fashion-MNIST not found in {raw_dir(data_dir)}; run `make data DATA_DIR={data_dir}`"}
    artifacts = Path(artifacts)
    fashion = list_models(dataset="fashion-mnist")
    models = [m for m in (models or (["baseline"] if quick else fashion)) if m in fashion]
    if not models:
        return {"skipped": "no Fashion-MNIST model selected"}
    reps, seconds = 3, (0.1 if quick else 0.3)  # repetitions, and seconds per timed loop
    splits = load_fashion_mnist(data_dir)
    calib = splits["train"].x[:CALIBRATION_IMAGES].numpy()
    test_x, test_y = splits["test"].x.numpy(), splits["test"].y.numpy()
    opts = {b: (ort_settings or {}).get(str(b), {"intra_op_num_threads": 1, "execution_mode": "sequential",
                                                 "graph_optimization_level": "all"}) for b in BATCHES}
    out: dict[str, Any] = {"settings": {
        "method": "quantize_static, QDQ, per-channel int8 weights, uint8 activations, MinMax calibration",
        "calibration_images": CALIBRATION_IMAGES, "accuracy_on": f"{len(test_y):,} test images",
        "session_options": {str(b): o for b, o in opts.items()}, "repetitions": reps}}
    with tempfile.TemporaryDirectory(prefix="fashion-zoo-int8-") as tmp:
        for name in models:
            model, _ = torch_model(name, artifacts)
            fp32, source = onnx_file(name, artifacts, model, Path(tmp))
            int8 = Path(tmp) / f"{name}.int8.onnx"
            quantize(fp32, int8, calib)
            row: dict[str, Any] = {"onnx": source, "bytes_fp32": fp32.stat().st_size, "bytes_int8": int8.stat().st_size}
            speed: dict[str, Any] = {}
            for b in BATCHES:
                s32, s8 = ort_session(fp32, **opts[b]), ort_session(int8, **opts[b])
                if b == BATCHES[0]:
                    row["accuracy_fp32"] = accuracy(s32, test_x, test_y)
                    row["accuracy_int8"] = accuracy(s8, test_x, test_y)
                x = test_x[:b]
                r32, r8 = [], []
                for _ in range(reps):
                    r32.append(_ort_rate(s32, x, seconds))
                    r8.append(_ort_rate(s8, x, seconds))
                speed[str(b)] = {"fp32_images_per_s": summary(r32), "int8_images_per_s": summary(r8),
                                 "int8_speedup": summary(a / b for a, b in zip(r8, r32))}
            row["accuracy_change_points"] = round(100 * (row["accuracy_int8"] - row["accuracy_fp32"]), 2)
            row["by_batch"] = speed
            row["pays_off"] = row["accuracy_change_points"] > -0.5 and \
                max(v["int8_speedup"]["median"] for v in speed.values()) > 1.1
            out[name] = row
            log(f"  int8 {name}: accuracy {100 * row['accuracy_fp32']:.2f} -> {100 * row['accuracy_int8']:.2f}, "
                "speed-up " + ", ".join(f"bs{b} {v['int8_speedup']['median']:.2f}x" for b, v in speed.items()))
    return out
