"""`rezolus-sampler audit`: run the checks over a tree, read why from principles.md, report.

    rezolus-sampler audit [TREE] [--sampler DIR]... [--json] [--measure]

Exit status: 0 no finding (waived ones excepted), 1 findings, 2 usage (not a
Rezolus tree, not a sampler directory), 77 `--measure` asked for but this
machine cannot load BPF (and nothing else was found).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

from rezolus_sampler.audit.checks import (
    CHECKS,
    Finding,
    TreeFacts,
    cached_text,
    possible_hooks,
    tree_descriptions,
    waiver_for,
)
from rezolus_sampler.audit.source import (
    Sampler,
    SourceError,
    Text,
    read_sampler,
    rust_consts,
    sampler_dir,
    sources,
)

EXIT_CLEAN, EXIT_FINDINGS, EXIT_USAGE, EXIT_CANNOT_MEASURE = 0, 1, 2, 77
PRINCIPLES = Path(__file__).resolve().parents[2] / "principles.md"


# --------------------------------------------------------------------------
# why it matters: sentences of principles.md
# --------------------------------------------------------------------------


@lru_cache(maxsize=4)
def principle_sections(path: Path = PRINCIPLES) -> dict[str, tuple[str, str]]:
    """ID -> (title, section text) of principles.md; {} when it is not there."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    heads = list(re.finditer(r"^## (P\d+) — (.+)$", text, re.M))
    sections = {}
    for i, m in enumerate(heads):
        end = re.search(r"^## ", text[m.end() :], re.M)
        sections[m.group(1)] = (
            m.group(2).strip(),
            text[m.end() : m.end() + end.start() if end else len(text)],
        )
    return sections


def _plain(markdown: str) -> str:
    return re.sub(r"\s+", " ", markdown.replace("**", "").replace("`", "")).strip()


def _sentences(markdown: str) -> list[str]:
    text = _plain(markdown).replace("e.g. ", "e.g.\0").replace("i.e. ", "i.e.\0")
    return [s.replace("\0", " ") for s in re.split(r"(?<=[.!?])\s+(?=[A-Za-z(\"'])", text)]


_PART_LABEL = re.compile(
    r"^-?\s*(?:Statement|Why|How to apply|What we refuse|When it may bend|"
    r"How the template enforces or checks it):\s*"
)


def why(principle: str, phrase: str, path: Path = PRINCIPLES) -> str:
    """The sentence of `principle` in principles.md that contains `phrase` (its
    Why part first), else the principle's title; never a copy kept here."""
    sections = principle_sections(path)
    if principle not in sections:
        return f"see {principle} in principles.md"
    title, body = sections[principle]
    why_part = re.search(r"\*\*Why:\*\*(.*?)(?=^- \*\*|\Z)", body, re.S | re.M)
    wanted = _plain(phrase)
    for part in ([why_part.group(1)] if why_part else []) + [body]:
        for sentence in _sentences(part):
            if wanted and wanted in sentence:
                return _PART_LABEL.sub("", sentence)
    return title


# --------------------------------------------------------------------------
# running the checks
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Report:
    root: Path
    samplers: list[str]
    findings: list[Finding]
    waived: list[Finding]
    notes: list[str]
    measure: dict[str, Any] | None = None

    def counts(self) -> dict[str, int]:
        counted = Counter(f.principle for f in self.findings)
        return {p: counted[p] for p in sorted(counted, key=lambda p: int(p[1:]))}


def find_root(start: Path) -> Path | None:
    for candidate in [start, *start.parents]:
        if (candidate / "build.rs").is_file():
            try:
                sources(candidate)
                return candidate
            except SourceError:
                continue
    return None


def load_tree(root: Path) -> tuple[list[Sampler], list[str]]:
    """Every sampler build.rs builds, plus notes on what could not be read."""
    samplers, notes = [], []
    for group, name in sources(root):
        directory = sampler_dir(root, group, name)
        try:
            samplers.append(read_sampler(root, directory))
        except SourceError as e:
            notes.append(f"build.rs lists {group}/{name}: {e}")
    built = {s.dir for s in samplers}
    for c in sorted((root / "src" / "agent" / "samplers").glob("*/linux/*/mod.bpf.c")):
        if c.parent not in built:
            notes.append(
                f"{c.parent.relative_to(root)} has a mod.bpf.c that build.rs SOURCES does not "
                "list: it is never built (not audited unless named with --sampler)"
            )
    return samplers, notes


def tree_facts(root: Path, samplers: list[Sampler]) -> TreeFacts:
    hooks: dict = {}
    for s in samplers:
        for hook, progs in possible_hooks(s).items():
            hooks.setdefault(hook, {})[s.name] = sorted({p.section for p in progs})
    return TreeFacts(root, hooks, tree_descriptions(root), rust_consts(root))


def _order(f: Finding) -> tuple:
    return f.sampler, str(f.file), f.line, f.principle


def run_checks(
    s: Sampler, facts: TreeFacts, texts: dict[Path, Text]
) -> tuple[list[Finding], list[Finding]]:
    """(unwaived, waived) findings of one sampler."""
    for text in (s.c, s.mod, s.stats):
        texts[text.path] = text
    open_, waived = [], []
    for check in CHECKS:
        for f in check(s, facts):
            f.why = why(f.principle, f.why_phrase)
            for path, _, _ in f.spans:
                cached_text(path, texts)
            reason = waiver_for(f, texts)
            if reason:
                f.waiver, f.waiver_line = reason
                waived.append(f)
            else:
                open_.append(f)
    return sorted(open_, key=_order), sorted(waived, key=_order)


def audit(root: Path, dirs: list[Path] | None = None) -> Report:
    """Audit the samplers in `dirs` (default: every sampler build.rs SOURCES lists)."""
    root = Path(root).resolve()
    built, notes = load_tree(root)
    if dirs:
        by_dir = {s.dir: s for s in built}
        targets = []
        for d in dirs:
            d = Path(d).resolve()
            targets.append(by_dir.get(d) or read_sampler(root, d))
        notes = []  # notes about the rest of the tree belong to a whole-tree audit
    else:
        targets = built
    everyone = built + [t for t in targets if t not in built]
    facts = tree_facts(root, everyone)
    texts: dict[Path, Text] = {}
    findings, waived = [], []
    for s in targets:
        open_, w = run_checks(s, facts, texts)
        findings += open_
        waived += w
    return Report(root, [s.name for s in targets], findings, waived, notes + facts.notes)


def audit_sampler(tree: Path, sampler_dir: Path) -> list[Finding]:
    """Unwaived findings of one sampler in a Rezolus tree (for tests and scripts).
    `Finding.check` names the check, e.g. "shared-hook" for a hook another
    sampler of the tree attaches too."""
    return audit(Path(tree), [Path(sampler_dir)]).findings


# --------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------


def finding_dict(f: Finding, root: Path) -> dict[str, Any]:
    out = {
        "principle": f.principle,
        "check": f.check,
        "sampler": f.sampler,
        "file": f.location(root).rsplit(":", 1)[0],
        "line": f.line,
        "what": f.what,
        "why": f.why,
        "fix": f.fix,
    }
    if f.waiver:
        out["waiver"] = {"line": f.waiver_line, "reason": f.waiver}
    return out


def as_json(report: Report) -> dict[str, Any]:
    return {
        "tree": str(report.root),
        "samplers": report.samplers,
        "counts": report.counts(),
        "findings": [finding_dict(f, report.root) for f in report.findings],
        "waived": [finding_dict(f, report.root) for f in report.waived],
        "notes": report.notes,
        **({"measure": report.measure} if report.measure is not None else {}),
    }


def format_text(report: Report) -> str:
    out = [f"audit of {report.root}: {len(report.samplers)} sampler(s)", ""]
    current = None
    for f in report.findings:
        if f.sampler != current:
            current = f.sampler
            out.append(current)
        out += [
            f"  {f.principle} {f.location(report.root)}  [{f.check}]",
            f"      what: {f.what}",
            f"      why:  {f.why} ({f.principle}, principles.md)",
            f"      fix:  {f.fix}",
        ]
    if report.findings:
        out.append("")
    for f in report.waived:
        out.append(
            f"waived: {f.principle} {f.location(report.root)} [{f.check}] by the comment at line "
            f"{f.waiver_line}: {f.waiver}"
        )
    out += [f"note: {n}" for n in report.notes]
    flagged = {f.sampler for f in report.findings}
    clean = [s for s in report.samplers if s not in flagged]
    counts = ", ".join(f"{p} {n}" for p, n in report.counts().items())
    out.append(
        f"{len(report.findings)} finding(s)"
        + (f" ({counts})" if counts else "")
        + f", {len(report.waived)} waived; clean: {', '.join(clean) if clean else 'none'}"
    )
    return "\n".join(out)


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Check every BPF sampler of a Rezolus tree against principles.md.",
    )
    p.add_argument(
        "tree",
        nargs="?",
        type=Path,
        help="Rezolus checkout (default: the one around " "--sampler, else the current directory)",
    )
    p.add_argument(
        "--sampler",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="audit only this sampler directory (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument(
        "--measure",
        action="store_true",
        help="also load, attach and measure every sampler the kernel accepts (root)",
    )
    return p


def main(argv: list[str] | None = None, prog: str = "rezolus-sampler audit") -> int:
    parser = _parser(prog)
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as e:
        return EXIT_USAGE if e.code else EXIT_CLEAN
    tree = args.tree
    dirs = []
    for d in args.sampler:
        if not d.exists() and tree is not None and (tree / d).exists():
            d = tree / d
        dirs.append(d)
    if tree is None:
        tree = find_root(dirs[0].resolve()) if dirs else Path.cwd()
    if tree is None:
        print(
            f"audit: {dirs[0]} is not inside a Rezolus tree (no build.rs with SOURCES above it)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if not (tree / "build.rs").is_file():
        print(f"audit: {tree} is not a Rezolus tree (no build.rs)", file=sys.stderr)
        return EXIT_USAGE
    try:
        sources(tree)
    except SourceError as e:
        print(f"audit: {e}", file=sys.stderr)
        return EXIT_USAGE
    for d in dirs:
        if not d.resolve().is_relative_to(tree.resolve()):
            print(f"audit: {d} is not inside the tree {tree}", file=sys.stderr)
            return EXIT_USAGE
    try:
        report = audit(tree, dirs or None)
    except SourceError as e:
        print(f"audit: {e}", file=sys.stderr)
        return EXIT_USAGE
    cannot = None
    if args.measure:
        from rezolus_sampler.audit import measure

        samplers = (
            [read_sampler(report.root, d.resolve()) for d in dirs]
            if dirs
            else load_tree(report.root)[0]
        )
        report.measure = measure.measure(report.root, samplers)
        cannot = report.measure.get("cannot")
    if args.json:
        print(json.dumps(as_json(report), indent=2))
    else:
        print(format_text(report))
        if report.measure is not None:
            from rezolus_sampler.audit import measure

            print("")
            print(measure.format_text(report.measure))
    if report.findings:
        return EXIT_FINDINGS
    if cannot:
        return EXIT_CANNOT_MEASURE
    return EXIT_CLEAN
