"""A disk cache of decoded photos: the Kaggle set's JPEGs as one uint8 array per preprocessing spec.

Decoding the 24,640 usable Kaggle photos takes about 6.3 s of one core, and a `make train-all` needs
them under two specs in five places; a cached entry loads in a fraction of a second. The key is a
sha256 of the cache format, the spec, Pillow's and numpy's versions and each file's id, label, size
and modification time, so a stale entry is never read; an entry's own sha256 is checked on every
read, so a damaged one is rebuilt, not used. A lock file lets parallel trainers decode an entry once.

    FASHION_ZOO_CACHE=DIR   where entries live (default: $XDG_CACHE_HOME/fashion-zoo, ~/.cache/...)
    FASHION_ZOO_CACHE=off   no cache: decode every time
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from zoo.fileio import replacing

CACHE_FORMAT = 1
ENV = "FASHION_ZOO_CACHE"
ARRAYS = ("ids", "labels", "pixels")

Decoded = tuple[np.ndarray, np.ndarray, np.ndarray, int]  # ids, labels, pixels, unreadable count


def cache_dir() -> Path | None:
    """The cache directory, or None when FASHION_ZOO_CACHE=off."""
    value = os.environ.get(ENV, "")
    if value.lower() in ("off", "0", "no", "false", "none"):
        return None
    if value:
        return Path(value)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fashion-zoo"


def cache_key(files: list[tuple[int, int, Path]], spec: dict[str, Any]) -> str:
    """sha256 of the cache format, the spec, the decoder's versions and each (id, label, file stat)."""
    import PIL

    h = hashlib.sha256(json.dumps({"format": CACHE_FORMAT, "spec": spec, "pillow": PIL.__version__,
                                   "numpy": np.__version__}, sort_keys=True).encode())
    for pid, label, path in files:
        try:
            st = path.stat()
            h.update(f"{pid},{label},{st.st_size},{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{pid},{label},missing\n".encode())
    return h.hexdigest()


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in ARRAYS:
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def read_entry(path: Path, key: str) -> Decoded | None:
    """The entry at `path` if it is whole and made for `key`; None (with a line saying why) if not."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            arrays = {name: z[name] for name in ARRAYS}
    except Exception as e:  # truncated zip, missing member, bad JSON: all mean "rebuild"
        why = f"is unreadable ({type(e).__name__})"
    else:
        why = ("was made for other files or settings" if meta.get("format") != CACHE_FORMAT or meta.get("key") != key
               else "is corrupt (its sha256 does not match)" if _digest(arrays) != meta.get("sha256") else None)
    if why:
        print(f"[cache] {path} {why}; decoding again", file=sys.stderr)
        return None
    return arrays["ids"], arrays["labels"], arrays["pixels"], int(meta["unreadable"])


def write_entry(path: Path, key: str, decoded: Decoded) -> None:
    """Write an entry atomically (zoo.fileio.replacing)."""
    ids, labels, pixels, unreadable = decoded
    arrays = {"ids": ids, "labels": labels, "pixels": pixels}
    meta = {"format": CACHE_FORMAT, "key": key, "unreadable": unreadable, "sha256": _digest(arrays)}
    with replacing(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)


def cached_decode(name: str, files: list[tuple[int, int, Path]], spec: dict[str, Any],
                  decode: Callable[[], Decoded], quiet: bool = False) -> Decoded:
    """decode() through the cache: read the entry for (files, spec), or decode once and store it."""
    root = cache_dir()
    if root is None:
        return decode()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"[cache] cannot use {root} ({e.strerror}); decoding without a cache", file=sys.stderr)
        return decode()
    key = cache_key(files, spec)
    path = root / f"{name}-{key[:24]}.npz"
    with open(root / f".{name}-{key[:24]}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        found = read_entry(path, key)
        if found is not None:
            if not quiet:
                print(f"[cache] {len(found[0]):,} decoded images from {path}", file=sys.stderr)
            return found
        decoded = decode()
        try:
            write_entry(path, key, decoded)
        except OSError as e:
            print(f"[cache] could not write {path} ({e.strerror}); continuing without it", file=sys.stderr)
    return decoded
