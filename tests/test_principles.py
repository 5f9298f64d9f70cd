"""principles.md: stable IDs, complete sections, and enforcements that exist.

The methodology is only useful if what it cites is real: every principle ID the
template, hooks or examples mention has a heading, IDs are never renumbered,
every principle has its six parts, and every `tests/x.py::name` or
`rezolus_sampler/<room>/x.py::name` it names is defined in that file.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "principles.md"

HEADING = re.compile(r"^## (P\d+) — (.+)$", re.M)
SECTION = re.compile(r"^## ", re.M)
PARTS = (
    "Statement",
    "Why",
    "How to apply",
    "What we refuse",
    "When it may bend",
    "How the template enforces or checks it",
)
ENFORCEMENT = PARTS[-1]
CITATION = re.compile(r"`((?:tests|hooks|rezolus_sampler)/[\w/]+\.py)::(\w+)`")
PRINCIPLE_ID = re.compile(r"\bP\d+\b")
# Where principle IDs are cited, including the guidance assistants read (AGENTS.md, skills/).
CITING = ("template", "hooks", "rezolus_sampler", "copier.yml", "README.md", "examples", "AGENTS.md", "skills")
TEXT_SUFFIXES = {".py", ".jinja", ".yml", ".yaml", ".md", ".json", ".toml", ".txt", ".c", ".h", ".rs"}


def doc_text() -> str:
    assert DOC.is_file(), "principles.md is missing at the repository root"
    return DOC.read_text(encoding="utf-8")


def principles() -> dict[str, tuple[str, str]]:
    """ID -> (title, section body up to the next level-2 heading)."""
    text = doc_text()
    out: dict[str, tuple[str, str]] = {}
    for m in HEADING.finditer(text):
        nxt = SECTION.search(text, m.end())
        body = text[m.end() : nxt.start() if nxt else len(text)]
        assert m.group(1) not in out, f"{m.group(1)} has two headings"
        out[m.group(1)] = (m.group(2).strip(), body)
    return out


def is_retired(title: str) -> bool:
    return "retired" in title.lower()


def part(body: str, name: str) -> str | None:
    """Text of `**name:**` (a paragraph or a `- ` list item) up to the next part (None if absent)."""
    marker = r"^(?:- )?\*\*"
    m = re.search(
        rf"{marker}{re.escape(name)}:\*\*(.*?)(?={marker}[A-Z][^*\n]*:\*\*|\Z)", body, re.M | re.S
    )
    return m.group(1).strip() if m else None


def cited_files() -> list[Path]:
    files: list[Path] = []
    for name in CITING:
        path = REPO / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += [
                p
                for p in sorted(path.rglob("*"))
                if p.is_file() and "__pycache__" not in p.parts and p.suffix in TEXT_SUFFIXES
            ]
    return files


@functools.lru_cache(maxsize=None)
def defined_names(relpath: str) -> frozenset[str]:
    """Functions, classes and module-level names defined in a Python file."""
    path = REPO / relpath
    if not path.is_file():
        return frozenset()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
    for node in tree.body:
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Name):
                    names.add(leaf.id)
    return frozenset(names)


def resolves(relpath: str, name: str) -> bool:
    if relpath.startswith("tests/"):
        # a test must be a test function pytest collects
        return name.startswith("test_") and name in defined_names(relpath)
    return name in defined_names(relpath)


# --------------------------------------------------------------------------


def test_ids_are_unique_and_consecutive_from_p1() -> None:
    ids = HEADING.findall(doc_text())
    numbers = [int(i[1:]) for i, _ in ids]
    assert numbers, "principles.md has no '## P<n> — <title>' headings"
    dup = sorted({n for n in numbers if numbers.count(n) > 1})
    assert not dup, f"duplicate principle IDs: {['P%d' % n for n in dup]}"
    assert numbers == list(range(1, len(numbers) + 1)), (
        f"principle headings must run P1..P{len(numbers)} in order without gaps "
        f"(retired principles keep a heading marked retired); got {['P%d' % n for n in numbers]}"
    )


def test_numbering_policy_is_stated() -> None:
    text = doc_text().lower()
    assert "never" in text and "renumber" in text
    assert "retired" in text


def test_every_cited_id_has_a_heading() -> None:
    known = set(principles())
    missing: dict[str, list[str]] = {}
    for path in cited_files():
        for pid in set(PRINCIPLE_ID.findall(path.read_text(encoding="utf-8", errors="replace"))):
            if pid not in known:
                missing.setdefault(pid, []).append(str(path.relative_to(REPO)))
    assert not missing, f"principle IDs cited but not defined in principles.md: {missing}"


def test_every_principle_has_all_six_parts() -> None:
    incomplete = {}
    for pid, (title, body) in principles().items():
        if is_retired(title):
            continue
        absent = [name for name in PARTS if not part(body, name)]
        if absent:
            incomplete[pid] = absent
    assert not incomplete, f"principles missing parts (as '**Part:** text'): {incomplete}"


def test_every_principle_names_an_existing_enforcement() -> None:
    lacking = []
    for pid, (title, body) in principles().items():
        if is_retired(title):
            continue
        section = part(body, ENFORCEMENT) or ""
        if not any(resolves(f, n) for f, n in CITATION.findall(section)):
            lacking.append(pid)
    assert not lacking, (
        f"{lacking}: the enforcement section must name at least one existing "
        f"`tests/<file>.py::test_name` or `rezolus_sampler/<room>/<file>.py::name`"
    )


def test_every_cited_enforcement_exists() -> None:
    citations = sorted(set(CITATION.findall(doc_text())))
    assert citations
    missing = [f"{f}::{n}" for f, n in citations if not resolves(f, n)]
    assert not missing, f"principles.md cites names that are not defined: {missing}"


@pytest.mark.parametrize(
    "body,expected",
    [
        ("**Statement:** a\n\n**Why:** b\n", {"Statement": "a", "Why": "b"}),
        ("**Statement:**\n- x\n- y\n**Why:** z", {"Statement": "- x\n- y", "Why": "z"}),
        ("- **Statement:** a\n  - `x`\n- **Why:** b", {"Statement": "a\n  - `x`", "Why": "b"}),
    ],
)
def test_part_parser(body: str, expected: dict[str, str]) -> None:
    for name, text in expected.items():
        assert part(body, name) == text
