"""The actors of a catalogue job: each holds one onnxruntime session per model and turns a batch
of files (path, bytes) into output rows, exactly as `POST /classify` answers each file.

Decoding is the service's (`service.imaging.decode`: the format allow-list, the size and pixel caps,
reduced-scale JPEG decoding, EXIF orientation), preprocessing and inference are the service's
(`service.inference.Batch`), and a file that fails gets the message the service would answer it
with, in the `error` column, instead of stopping the job.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from service.imaging import ImageError, decode
from service.inference import Batch, unconvertible
from service.runtime import build_zoo
from zoo.auto import AUTO

from .output import SCHEMA


def assigned_cpus() -> int:
    """The CPUs Ray gave this actor (at least 1): its sessions' intra-op threads."""
    import ray

    return max(1, round(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))


class Classifier:
    """A Ray Data callable class (`map_batches(Classifier, compute=ActorPoolStrategy(...))`)."""

    def __init__(self, manifest: dict[str, Any], files: dict[str, bytes], tag: str, names: list[str],
                 auto: dict[str, Any] | None, top_k: int, device: str, scheme: str = "") -> None:
        import ray

        self.zoo = build_zoo(manifest, files, Path(tag), tag, device, assigned_cpus())
        self.names, self.auto, self.top_k, self.scheme = names, auto, top_k, scheme
        self.requested = AUTO if auto else names[0] if len(names) == 1 else "all"
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        return classify_files(self.zoo, self.names, self.auto, self.top_k, self.requested,
                              [self.scheme + p for p in batch["path"]], batch["bytes"], self.node)


def classify_files(zoo, names: list[str], auto: dict[str, Any] | None, top_k: int, requested: str,
                   paths: list[str], data: list[bytes], node: str | None = None) -> pa.Table:
    """Rows (SCHEMA) for files `paths` with contents `data`: one per answering model of each file
    that decodes, one with `error` set for each that does not."""
    batch = Batch(zoo, names, auto)
    ok: list[str] = []
    rows: dict[str, list] = {name: [] for name in SCHEMA.names}

    def row(path, model, label=None, class_id=None, confidence=None, top=None, probabilities=None,
            chosen_by=None, error=None):
        for name, value in zip(SCHEMA.names, (path, model, label, class_id, confidence, top,
                                              probabilities, chosen_by, error, node)):
            rows[name].append(value)

    for path, content in zip(paths, data):
        try:
            batch.add(decode(content))
            ok.append(path)
        except ImageError as e:
            row(path, requested, error=str(e))
        except Exception as e:  # what the service answers 400 to: a mode PIL cannot make grey
            row(path, requested, error=f"the image {unconvertible(e)}")
    if ok:
        for path, answers in zip(ok, batch.results(top_k)):
            for r in answers:
                row(path, r["model"], r["label"], r["class_id"], r["confidence"], r["top"],
                    list(r["probabilities"].values()), AUTO if auto else None)
    return pa.table(rows, schema=SCHEMA)
