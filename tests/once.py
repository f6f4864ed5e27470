"""What the test session makes once, however many pytest-xdist workers run it (`make test` runs one
per core, `-n`, each test module whole on one worker: `--dist loadfile`)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import pytest


def made_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """A directory that `make(directory)` fills, made once per test session: the first worker to ask
    makes it, under a lock, while the others wait; each worker then gets a copy of its own, so that
    what one worker's tests do to theirs cannot reach another's."""
    own = tmp_path_factory.mktemp(name)
    if os.environ.get("PYTEST_XDIST_WORKER") is None:  # no workers: this process is the session
        make(own)
        return own
    from filelock import FileLock

    shared = shared_dir(tmp_path_factory.getbasetemp().parent, name)
    with FileLock(f"{shared}.lock"):
        if not (shared / ".made").exists():
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            make(shared)
            (shared / ".made").touch()
    shutil.copytree(shared, own, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".made"))
    return own


def shared_dir(session_temp: Path, name: str) -> Path:
    """Where `made_once` keeps what it made, under the session's temporary directory (the one every
    worker's own temporary directory is in)."""
    return session_temp / f"made-once-{name}"
