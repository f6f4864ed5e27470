"""The catalogue job's output, OUT: a Parquet dataset (a folder of parts), one row per image and
answering model (columns and metadata: docs/catalogue.md). A part is written as the rows arrive, under
a hidden name, and renamed when complete, so the driver holds one block at a time (writing a part's
blocks in one go cost it 60 MiB more on 100,000 photos). A rerun classifies only the files in no part.
"""
from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs

from zoo.errors import ZooError

from .sources import filesystem_of

FORMAT = 1
META_KEY = b"fashion_zoo"
PART_PREFIX, PART_SUFFIX = "part-", ".parquet"

TOP = pa.struct([("label", pa.string()), ("class_id", pa.int32()), ("probability", pa.float64())])
SCHEMA = pa.schema([
    ("path", pa.string()), ("model", pa.string()), ("label", pa.string()), ("class_id", pa.int32()),
    ("confidence", pa.float64()), ("top", pa.list_(TOP)), ("probabilities", pa.list_(pa.float64())),
    ("chosen_by", pa.string()), ("error", pa.string()), ("node", pa.string()),
])
# What must match for a rerun to add to an output rather than mix two different jobs in it.
_SAME_JOB = ("format", "manifest_sha256", "model", "top_k")


def metadata(zoo_tag: str, manifest_sha256: str, model: str, top_k: int,
             classes: dict[str, list[str]]) -> dict[str, Any]:
    return {"format": FORMAT, "zoo": zoo_tag, "manifest_sha256": manifest_sha256, "model": model,
            "top_k": top_k, "classes": classes}


class Output:
    """OUT, opened for writing: checked writable, earlier parts scanned (`done`)."""

    def __init__(self, out: str, meta: dict[str, Any], overwrite: bool = False) -> None:
        self.out, self.meta = out, meta
        self.fs, self.dir = filesystem_of(out, "OUT")
        self.run = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.parts = 0         # parts written by this run
        self.pending_rows = 0  # rows in the part being written (not yet a part of OUT)
        self.done: set[str] = set()
        self.done_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._open(overwrite)

    def _open(self, overwrite: bool) -> None:
        if self.fs.get_file_info(self.dir).type == fs.FileType.File:
            raise ZooError(f"OUT {self.out!r} is a file; give a folder for the Parquet dataset")
        try:
            self.fs.create_dir(self.dir, recursive=True)
            probe = f"{self.dir}/.write-test-{self.run}"
            self.fs.open_output_stream(probe).close()
            self.fs.delete_file(probe)
        except OSError as e:
            raise ZooError(f"OUT {self.out!r} is not writable ({type(e).__name__}: {e}); give a folder "
                           f"you can write to") from None
        for i in self.fs.get_file_info(fs.FileSelector(self.dir)):
            name = i.base_name
            if i.type != fs.FileType.File or not name.endswith(PART_SUFFIX):
                continue
            # A part a crash left half-written (hidden) is never read; --overwrite removes the others.
            if name.startswith(f".{PART_PREFIX}") or (overwrite and name.startswith(PART_PREFIX)):
                self.fs.delete_file(i.path)
            elif name.startswith(PART_PREFIX):
                self._scan(i.path)

    def _scan(self, path: str) -> None:
        try:
            table = pq.read_table(path, columns=["path"], filesystem=self.fs)
        except Exception as e:
            print(f"catalogue: {path} is not a readable Parquet part ({type(e).__name__}: {e}); removed, "
                  f"its images are classified again", file=sys.stderr)
            self.fs.delete_file(path)
            return
        try:
            theirs = json.loads(pq.read_schema(path, filesystem=self.fs).metadata[META_KEY])
        except (TypeError, KeyError, ValueError):  # no metadata, or not ours
            theirs = {}
        if differ := [k for k in _SAME_JOB if theirs.get(k) != self.meta[k]]:
            said = ", ".join(f"{k} {theirs.get(k)!r} (now {self.meta[k]!r})" for k in differ)
            raise ZooError(f"OUT {self.out!r} holds the results of another job ({path}: {said}); "
                           f"run the same command as before to resume it, add --overwrite to start "
                           f"over, or give another OUT")
        self.done.update(table.column("path").to_pylist())
        self.done_rows += table.num_rows

    def add(self, table: pa.Table) -> None:
        """Append `table` (SCHEMA) to the part being written, opening one if none is."""
        if self._writer is None:
            name = f"{PART_PREFIX}{self.run}-{self.parts:05d}{PART_SUFFIX}"
            self._tmp, self._final = f"{self.dir}/.{name}", f"{self.dir}/{name}"
            schema = SCHEMA.with_metadata({META_KEY: json.dumps(self.meta, sort_keys=True).encode()})
            self._writer = pq.ParquetWriter(self._tmp, schema, filesystem=self.fs)
        self._writer.write_table(table)
        self.pending_rows += table.num_rows

    def seal(self) -> None:
        """Close the part being written, if any, and give it its final name."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self.fs.move(self._tmp, self._final)
            self.parts += 1
            self.pending_rows = 0
