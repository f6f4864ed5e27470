"""The zoo's error type: an expected failure whose message says how to fix it (`zoo.cli` turns it
into one line on stderr)."""
from __future__ import annotations


class ZooError(Exception):
    """An expected failure (missing data, bad checkpoint...) whose message says how to fix it."""
