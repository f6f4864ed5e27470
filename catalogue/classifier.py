"""The actors of a catalogue job: each holds one onnxruntime session per model, reads its batch's
files (pyarrow filesystem, sizes checked first) and turns them into output rows exactly as
`POST /classify` answers each file: the service's decoding (`service.imaging.decode`), preprocessing
and inference (`service.inference.Batch`); a file that fails is a row with the service's message.
"""
from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from service.imaging import ImageError, check_size, decode
from service.inference import Batch, unconvertible
from service.runtime import build_zoo
from zoo.auto import AUTO

from .output import SCHEMA

REMOTE_READERS = 16  # threads reading a batch's files from a remote filesystem


class Classifier:
    """A Ray Data callable class (`map_batches(Classifier, compute=ActorPoolStrategy(...))`)."""

    def __init__(self, manifest: dict[str, Any], files: dict[str, bytes], tag: str, names: list[str],
                 auto: dict[str, Any] | None, top_k: int, device: str, filesystem, scheme: str = "") -> None:
        import ray

        ray_ctx = ray.get_runtime_context()
        threads = max(1, round(ray_ctx.get_assigned_resources().get("CPU", 1)))  # the CPUs Ray gave this actor
        self.zoo = build_zoo(manifest, files, Path(tag), tag, device, threads)
        self.names, self.auto, self.top_k, self.scheme = names, auto, top_k, scheme
        self.requested = AUTO if auto else names[0] if len(names) == 1 else "all"
        self.node = ray_ctx.get_node_id()
        self.fs = filesystem
        # A remote filesystem (a bucket) answers each read after a round trip: read a batch's files
        # in threads there; local files are read in turn (a page-cache read takes microseconds).
        self.pool = None if scheme in ("", "file://") else concurrent.futures.ThreadPoolExecutor(REMOTE_READERS)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        paths = list(batch["path"])
        data = list(self.pool.map(self.read, paths)) if self.pool else [self.read(p) for p in paths]
        return classify_files(self.zoo, self.names, self.auto, self.top_k, self.requested,
                              [self.scheme + p for p in paths], data, self.node)

    def read(self, path: str) -> bytes | ImageError:
        """The file's bytes, or the error to report for it (one over the service's size limit is not read)."""
        try:
            with self.fs.open_input_file(path) as f:
                check_size(f.size())
                return f.read()
        except ImageError as e:
            return e
        except OSError as e:
            return ImageError(f"cannot read the file ({type(e).__name__}: {e})")


def classify_files(zoo, names: list[str], auto: dict[str, Any] | None, top_k: int, requested: str,
                   paths: list[str], data: list[bytes | ImageError], node: str | None = None) -> pa.Table:
    """Rows (SCHEMA) for files `paths` with contents `data` (or the error reading one gave): one
    per answering model of each file that decodes, one with `error` set for each that does not."""
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
            if isinstance(content, ImageError):
                raise content
            batch.add(decode(content))
            ok.append(path)
        except ImageError as e:
            row(path, requested, error=str(e))
        except Exception as e:  # what the service answers 400 to: a mode PIL cannot make grey
            row(path, requested, error=f"the image {unconvertible(e)}")
    for path, answers in zip(ok, batch.results(top_k)):
        for r in answers:
            row(path, r["model"], r["label"], r["class_id"], r["confidence"], r["top"],
                list(r["probabilities"].values()), AUTO if auto else None)
    return pa.table(rows, schema=SCHEMA)
