"""The zoo's error type (`zoo.cli` tells one in a line on stderr)."""
from __future__ import annotations


class ZooError(Exception):
    """An expected failure (missing data, bad checkpoint...) whose message says how to fix it."""
