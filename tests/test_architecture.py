"""The package arrows docs/architecture.md draws, checked on the source: every import of a project
package (at module level or inside a function) is one the table allows, and there is no cycle."""
import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

# package -> the project packages its modules may import (docs/architecture.md, "What each package owns").
ALLOWED = {
    "zoo": set(),
    "training": {"zoo"},
    "export": {"training", "zoo"},
    "release": {"export", "training", "zoo"},
    "service": {"zoo"},
    "catalogue": {"service", "zoo"},
    "bench": {"service", "catalogue", "training", "deploy", "zoo"},
    "deploy": {"zoo"},
}


def imports(package: str) -> dict[str, set[str]]:
    """{project package imported: the files of `package` that import it}."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in ALLOWED and top != package:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_import_follows_an_arrow_of_the_architecture():
    wrong = {f"{package} -> {target}": sorted(files)
             for package in ALLOWED for target, files in imports(package).items()
             if target not in ALLOWED[package]}
    assert not wrong, f"imports against docs/architecture.md: {wrong}"


def test_the_arrows_have_no_cycle():
    graph = {p: set(imports(p)) for p in ALLOWED}
    done: set[str] = set()

    def visit(p: str, path: tuple[str, ...]) -> None:
        assert p not in path, f"import cycle: {' -> '.join(path + (p,))}"
        if p not in done:
            for q in graph[p]:
                visit(q, path + (p,))
            done.add(p)

    for p in graph:
        visit(p, ())


def test_the_table_is_the_one_in_the_docs():
    """Each package's row in docs/architecture.md names exactly the packages ALLOWED lets it import."""
    rows = {}
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 3 and cells[0].strip("`/") in ALLOWED:
            rows[cells[0].strip("`/")] = {w.strip("`,") for w in cells[2].split() if w.strip("`,") in ALLOWED}
    assert rows == ALLOWED


def test_no_source_file_is_ignored_by_git():
    """A file git ignores never reaches a clone: a package whose __init__.py matched an ignore
    pattern imports here and fails everywhere else."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(
        ["git", "ls-files", "--others", "--ignored", "--exclude-standard", "--", *ALLOWED, "tests"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert [f for f in ignored if f.endswith(".py")] == [], (
        "git ignores these source files, so a clone lacks them: fix .gitignore")
