"""The catalogue job's output: a Parquet dataset (a folder of parts) that `pyarrow.parquet.read_table`
and `pandas.read_parquet` read, one row per image and answering model.

Columns (`SCHEMA`): path (the file, as SRC named it: a local absolute path or a URI), model (the
model that answered; for a file that failed, the MODEL asked for), label, class_id, confidence,
top (the top-k labels with their probabilities, most probable first), probabilities (every class's,
in the order of the metadata's `classes`), chosen_by ("auto" where model=auto chose the model),
error (why a file could not be classified, in the service's words; label and the rest are null),
node (the Ray node that classified it).

Every part carries the same schema metadata under the key `fashion_zoo` (JSON): the format, the zoo
(store tag and the sha256 of its manifest), the MODEL and TOP_K asked for and each model's classes.

Each part is written as the rows arrive (a row group per block, under a hidden temporary name) and
renamed when it is complete, so a part that exists is complete and the driver holds one block at a
time (collecting a part's blocks and writing them in one go cost it 60 MiB more on 100,000 photos);
a rerun reads the `path` column of every part and classifies only the files not in any (resume).
A part that cannot be read (cut short by a crash of the filesystem itself) is reported and removed,
and its files are classified again.
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

FORMAT = 1
META_KEY = b"fashion_zoo"
PART_PREFIX, PART_SUFFIX = "part-", ".parquet"

TOP = pa.struct([("label", pa.string()), ("class_id", pa.int32()), ("probability", pa.float64())])
SCHEMA = pa.schema([
    ("path", pa.string()), ("model", pa.string()), ("label", pa.string()), ("class_id", pa.int32()),
    ("confidence", pa.float64()), ("top", pa.list_(TOP)), ("probabilities", pa.list_(pa.float64())),
    ("chosen_by", pa.string()), ("error", pa.string()), ("node", pa.string()),
])


def metadata(zoo_tag: str, manifest_sha256: str, model: str, top_k: int,
             classes: dict[str, list[str]]) -> dict[str, Any]:
    return {"format": FORMAT, "zoo": zoo_tag, "manifest_sha256": manifest_sha256, "model": model,
            "top_k": top_k, "classes": classes}


def read_metadata(schema: pa.Schema) -> dict[str, Any] | None:
    raw = (schema.metadata or {}).get(META_KEY)
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


# What must match for a rerun to add to an output rather than mix two different jobs in it.
_SAME_JOB = ("format", "manifest_sha256", "model", "top_k")


class Output:
    """OUT, opened for writing: checked writable, earlier parts scanned (`done`)."""

    def __init__(self, out: str, meta: dict[str, Any], overwrite: bool = False) -> None:
        self.out, self.meta = out, meta
        if "://" in out:
            try:
                self.fs, self.dir = fs.FileSystem.from_uri(out)
            except Exception as e:
                raise ZooError(f"OUT {out!r}: pyarrow has no filesystem for it ({type(e).__name__}: {e})") from None
        else:
            import os

            self.fs, self.dir = fs.LocalFileSystem(), os.path.abspath(out)
        self.run = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.seq = 0
        self.parts = 0       # parts written by this run
        self.done: set[str] = set()
        self.done_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._rows = 0
        self._open(overwrite)

    def _open(self, overwrite: bool) -> None:
        info = self.fs.get_file_info(self.dir)
        if info.type == fs.FileType.File:
            raise ZooError(f"OUT {self.out!r} is a file; give a folder for the Parquet dataset")
        try:
            self.fs.create_dir(self.dir, recursive=True)
            probe = f"{self.dir}/.write-test-{self.run}"
            with self.fs.open_output_stream(probe) as f:
                f.write(b"")
            self.fs.delete_file(probe)
        except OSError as e:
            raise ZooError(f"OUT {self.out!r} is not writable ({type(e).__name__}: {e}); give a folder "
                           f"you can write to") from None
        for i in self.fs.get_file_info(fs.FileSelector(self.dir)):
            name = i.base_name
            if i.type != fs.FileType.File:
                continue
            if name.startswith(f".{PART_PREFIX}"):  # a part a crash left half-written: never read
                self.fs.delete_file(i.path)
            elif name.startswith(PART_PREFIX) and name.endswith(PART_SUFFIX):
                if overwrite:
                    self.fs.delete_file(i.path)
                else:
                    self._scan(i.path)

    def _scan(self, path: str) -> None:
        try:
            table = pq.read_table(path, columns=["path"], filesystem=self.fs)
        except Exception as e:
            print(f"catalogue: {path} is not a readable Parquet part ({type(e).__name__}: {e}); removed, "
                  f"its images are classified again", file=sys.stderr)
            self.fs.delete_file(path)
            return
        theirs = read_metadata(pq.read_schema(path, filesystem=self.fs)) or {}
        differ = [k for k in _SAME_JOB if theirs.get(k) != self.meta[k]]
        if differ:
            said = ", ".join(f"{k} {theirs.get(k)!r} (now {self.meta[k]!r})" for k in differ)
            raise ZooError(f"OUT {self.out!r} holds the results of another job ({path}: {said}); "
                           f"run the same command as before to resume it, add --overwrite to start "
                           f"over, or give another OUT")
        self.done.update(table.column("path").to_pylist())
        self.done_rows += table.num_rows

    def add(self, table: pa.Table) -> None:
        """Append `table` (SCHEMA) to the part being written, opening one if none is."""
        if self._writer is None:
            name = f"{PART_PREFIX}{self.run}-{self.seq:05d}{PART_SUFFIX}"
            self._tmp, self._final = f"{self.dir}/.{name}", f"{self.dir}/{name}"
            schema = SCHEMA.with_metadata({META_KEY: json.dumps(self.meta, sort_keys=True).encode()})
            self._writer = pq.ParquetWriter(self._tmp, schema, filesystem=self.fs)
            self._rows = 0
        self._writer.write_table(table)
        self._rows += table.num_rows

    @property
    def pending_rows(self) -> int:
        """Rows in the part being written (not yet a part of OUT)."""
        return self._rows if self._writer is not None else 0

    def seal(self) -> int:
        """Close the part being written and give it its final name; returns its rows (0 if none)."""
        if self._writer is None:
            return 0
        self._writer.close()
        self._writer = None
        self.fs.move(self._tmp, self._final)
        self.seq += 1
        self.parts += 1
        return self._rows
