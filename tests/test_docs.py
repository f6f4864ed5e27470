"""The documentation: the MkDocs site builds with --strict, every page is in its navigation, the
README's relative links point at files that exist, and the source files and `python -m` modules the
pages name are there (a moved module fails here, not in a reader's shell).

`make test` installs the `[docs]` extra (MkDocs and the Material theme) before running this.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import importlib.util

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# [text](target): the form the README uses for links.
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _relative_links(markdown: str) -> list[str]:
    """The link targets of `markdown` that point inside the repository (no scheme, no bare anchor)."""
    targets = []
    for target in LINK.findall(markdown):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def test_readme_links_point_at_existing_files():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = _relative_links(readme)
    assert targets, "the README links to no page under docs/"
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_readme_links_every_docs_page():
    linked = {Path(t).name for t in _relative_links((ROOT / "README.md").read_text(encoding="utf-8"))}
    pages = {p.name for p in DOCS.glob("*.md")} - {"changelog.md"}  # the README links CHANGELOG.md
    unlinked = sorted(pages - linked)
    assert not unlinked, f"docs pages the README does not link to: {unlinked}"


def _pages() -> dict[str, str]:
    """README.md, CHANGELOG.md and every docs page, by name."""
    files = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted(DOCS.rglob("*.md"))]
    return {str(f.relative_to(ROOT)): f.read_text(encoding="utf-8") for f in files}


# A source file named in a code span: `service/routes.py`, `deploy/k8s/validate.py`.
SOURCE = re.compile(r"`([a-z_]+/[A-Za-z0-9_./-]+\.(?:py|sh|j2|yaml|yml|conf|toml|json))`")
# Folders whose files are made by running the project, not kept in the repository.
GENERATED = {"artifacts", "data", "site", "build"}


def _current(pattern: re.Pattern, text: str) -> list[str]:
    """The names `pattern` finds in `text`, less a former name: one right after "was " (the
    changelog's "`release/shipped.py` (was `service/shipped.py`)")."""
    return [m.group(1) for m in pattern.finditer(text) if not re.search(r"\bwas `?$", text[:m.start()][-6:])]


def test_named_source_files_exist():
    top = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")} - GENERATED
    missing = []
    for name, text in _pages().items():
        for path in _current(SOURCE, text):
            # paths relative to another folder (`overlays/gpu/gpu.yaml` under deploy/k8s) are left alone
            if path.split("/", 1)[0] in top and not (ROOT / path).exists():
                missing.append(f"{name}: {path}")
    assert not missing, f"the docs name files that do not exist: {missing}"


MODULE = re.compile(r"python -m ([a-z_][a-z0-9_.]*[a-z0-9_])")


def test_named_modules_exist():
    missing = []
    for name, text in _pages().items():
        for module in sorted(set(_current(MODULE, text))):
            if module in {"pytest", "mkdocs"}:
                continue
            if importlib.util.find_spec(module) is None:
                missing.append(f"{name}: python -m {module}")
    assert not missing, f"the docs name modules that do not exist: {missing}"


def test_every_docs_page_is_in_the_nav():
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = set(re.findall(r"^\s*-\s[^:\n]+:\s*(\S+\.md)\s*$", config, flags=re.M))
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert pages - nav == set(), f"pages missing from mkdocs.yml's nav: {sorted(pages - nav)}"
    assert nav - pages == set(), f"nav entries without a page: {sorted(nav - pages)}"


def test_site_builds_strict(tmp_path):
    try:
        import material  # noqa: F401  (the theme mkdocs.yml names)
        import mkdocs  # noqa: F401
    except ImportError:
        pytest.fail("MkDocs or its Material theme is not installed: run `make docs` or `make test`, "
                    "which install the [docs] extra")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "changelog" / "index.html").is_file()
