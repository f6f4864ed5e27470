"""Command-line plumbing shared by every `python -m ...` tool: one-line errors saying what is wrong
and what to do, an argparse that reports a bad argument in one line, and the reports' tables."""
from __future__ import annotations

import argparse
import functools
import sys
from typing import Any, Callable, Iterable, NoReturn

from .errors import ZooError


RESUMES = "finished epochs are saved; run the same command again to resume"  # what training says on Ctrl-C
EXPECTED = (ZooError, ValueError, FileNotFoundError)  # failures told in one line, never a traceback


def cli(main: Callable[[], None] | None = None, *, interrupted: str | None = None) -> Any:
    """Run `main`, turning expected failures into one line on stderr and a non-zero exit, and Ctrl-C
    into "interrupted" (with `interrupted`, what was kept and how to go on) and exit status 130.

    `@cli` or `@cli(interrupted=RESUMES)`."""
    if main is None:
        return functools.partial(cli, interrupted=interrupted)

    @functools.wraps(main)
    def wrapper() -> None:
        try:
            main()
        except EXPECTED as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print(f"\ninterrupted{f': {interrupted}' if interrupted else ''}", file=sys.stderr)
            sys.exit(130)

    return wrapper


def pct(fraction: float | None) -> str:
    """A fraction as the tables print it, in percent with two decimals ("–" for none)."""
    return "–" if fraction is None else f"{100 * fraction:.2f}"


def table(head: list[str], rows: Iterable[Iterable[Any]], align: str = "lr") -> list[str]:
    """A markdown table's lines; `align`: 'l' or 'r' per column, its last letter repeated for the rest."""
    align = align.ljust(len(head), align[-1])
    return ["| " + " | ".join(head) + " |", "|" + "".join("---:|" if a == "r" else "---|" for a in align),
            *("| " + " | ".join(map(str, row)) + " |" for row in rows)]


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (no usage wall) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)
