"""Register a newly rendered BPF sampler in a Rezolus checkout.

A sampler ``<group>/<sampler>`` rendered by the template is only compiled,
run and understood by Rezolus once it is listed in a handful of files:

1. ``build.rs`` -- the ``SOURCES`` list of BPF programs to build;
2. ``src/agent/samplers/<group>/linux/mod.rs`` -- ``mod <sampler>;``;
3. ``src/agent/samplers/<group>/mod.rs`` -- the non-Linux ``stats`` fallback
   (plus, for a new group, ``mod <group>;`` in ``src/agent/samplers/mod.rs``);
4. ``config/agent.toml`` -- a ``[samplers.<name>]`` section;
5. ``src/analysis/extract/context.rs`` -- ``EXPECTED_SUBSYSTEMS``,
   ``BPF_SAMPLERS`` and ``METRIC_SAMPLERS``;
6. ``src/analysis/extract/golden.rs`` -- ``subsystems_absent`` in ``GOLDEN``.

Every edit is idempotent.  :func:`plan` computes the new text of every file
that must change without touching the disk; :func:`apply` writes the whole
plan atomically per file and rolls every file back if any write fails.

Usable both as a module (``from rezolus_sampler.tree.register import apply``) and as a
script (``python hooks/register.py --root DIR --answers FILE``, Copier's task).
Only the standard library is used.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Registration",
    "RegistrationError",
    "is_rezolus_tree",
    "plan",
    "apply",
    "main",
    "registration_from_answers",
]

# --------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------

_IDENT_RE = re.compile(r"^[a-z][a-z0-9_]*$")

# Names that cannot be used as a Rust module name (`mod type;` does not parse).
_RUST_KEYWORDS = frozenset(
    """
    as async await break const continue crate dyn else enum extern false fn for
    if impl in let loop match mod move mut pub ref return self static struct
    super trait true type unsafe use where while abstract become box do final
    macro override priv typeof unsized virtual yield try gen
    """.split()
)

# Every BPF sampler declares these itself; Rezolus resolves them through
# BPF_SAMPLERS / AMBIGUOUS_METRICS, never through METRIC_SAMPLERS.
_BPF_RUN_PREFIX = "rezolus_bpf_run_"


class RegistrationError(Exception):
    """Bad input, or a Rezolus file that does not have the expected shape."""


@dataclass(frozen=True)
class Registration:
    group: str
    sampler: str
    description: str
    metric_names: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for what, value in (("group", self.group), ("sampler", self.sampler)):
            if not isinstance(value, str) or not _IDENT_RE.match(value):
                raise RegistrationError(
                    f"invalid {what} {value!r}: must match {_IDENT_RE.pattern} "
                    "(snake_case, starting with a letter)"
                )
            if value in _RUST_KEYWORDS:
                raise RegistrationError(
                    f"invalid {what} {value!r}: a Rust keyword cannot be a module name"
                )
        if not isinstance(self.description, str):
            raise RegistrationError("description must be a string")
        if "\n" in self.description or "\r" in self.description:
            raise RegistrationError(
                f"description must be a single line, got {self.description!r}"
            )
        names = self.metric_names
        if isinstance(names, str):
            raise RegistrationError(
                "metric_names must be a sequence of names, not a single string"
            )
        names = tuple(names)
        for metric in names:
            if not isinstance(metric, str) or not _IDENT_RE.match(metric):
                raise RegistrationError(
                    f"invalid metric name {metric!r}: must match {_IDENT_RE.pattern}"
                )
        object.__setattr__(self, "metric_names", names)

    @property
    def name(self) -> str:
        return f"{self.group}_{self.sampler}"

    @classmethod
    def of(cls, sampler) -> "Registration":
        """The registration of a `rezolus_sampler.spec.model.Sampler`."""
        return cls(
            group=sampler.group,
            sampler=sampler.sampler,
            description=sampler.description,
            metric_names=tuple(sampler.metric_names),
        )


def registration_from_answers(path: Path, root: Path) -> Registration:
    """The Registration of the sampler whose Copier answers file is ``path``.

    The answers go through the same model the templates render from, so the
    registered metric names are exactly the rendered ones.
    """
    import yaml  # Copier's own dependency; present wherever tasks run

    from rezolus_sampler.spec import model

    answers_path = Path(root) / path
    try:
        answers = yaml.safe_load(answers_path.read_text(encoding="utf-8"))
        sampler = model.build(answers, Path(root))
    except (OSError, yaml.YAMLError, model.SpecError) as e:
        raise RegistrationError(f"cannot read answers {answers_path}: {e}") from None
    return Registration.of(sampler)


# --------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------

BUILD_RS = Path("build.rs")
SAMPLERS_DIR = Path("src/agent/samplers")
SAMPLERS_MOD = SAMPLERS_DIR / "mod.rs"
AGENT_TOML = Path("config/agent.toml")
CONTEXT_RS = Path("src/analysis/extract/context.rs")
GOLDEN_RS = Path("src/analysis/extract/golden.rs")

_SOURCES_RE = re.compile(r"\bconst\s+SOURCES\s*:\s*&\s*\[[^=;]*=\s*&\s*\[")


def is_rezolus_tree(root: Path) -> bool:
    """True when ``root`` looks like a Rezolus checkout (build.rs with SOURCES)."""
    build = Path(root) / BUILD_RS
    try:
        text = build.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return _SOURCES_RE.search(text) is not None


# --------------------------------------------------------------------------
# Rust lexing helpers
# --------------------------------------------------------------------------


def _skip_string(text: str, i: int) -> int:
    """``text[i]`` is ``"``; return the index just past the closing quote."""
    n = len(text)
    i += 1
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i + 1
        i += 1
    raise RegistrationError("unterminated string literal")


def _skip_trivia(text: str, i: int) -> int | None:
    """If a comment starts at ``i`` return the index past it, else None."""
    if text.startswith("//", i):
        j = text.find("\n", i)
        return len(text) if j < 0 else j
    if text.startswith("/*", i):
        depth = 0
        n = len(text)
        while i < n:
            if text.startswith("/*", i):
                depth += 1
                i += 2
            elif text.startswith("*/", i):
                depth -= 1
                i += 2
                if depth == 0:
                    return i
            else:
                i += 1
        raise RegistrationError("unterminated block comment")
    return None


_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {")", "]", "}"}


def _match_close(text: str, open_idx: int) -> int:
    """Index of the bracket closing the one at ``open_idx`` (strings/comments aware)."""
    stack = [_OPEN[text[open_idx]]]
    i = open_idx + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i = _skip_string(text, i)
            continue
        skipped = _skip_trivia(text, i)
        if skipped is not None:
            i = skipped
            continue
        if c in _OPEN:
            stack.append(_OPEN[c])
        elif c in _CLOSE:
            if c != stack.pop():
                raise RegistrationError(f"mismatched {c!r} at offset {i}")
            if not stack:
                return i
        i += 1
    raise RegistrationError("unbalanced brackets")


_STRING_LIT_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass
class _Item:
    start: int  # offset of the first character of the item
    end: int  # offset just past the item's last character (before its comma)
    comma: int | None  # offset of the comma following the item, if any
    key: tuple[str, ...]  # the item's string literals, in order


def _array_items(text: str, open_idx: int, close_idx: int) -> list[_Item]:
    """Split the body of a Rust array literal into its top-level items."""
    items: list[_Item] = []
    i = open_idx + 1
    start: int | None = None
    end = 0
    depth = 0

    def finish(comma: int | None) -> None:
        nonlocal start
        if start is not None:
            body = text[start:end]
            key = tuple(m.group(1) for m in _STRING_LIT_RE.finditer(body))
            items.append(_Item(start, end, comma, key))
        start = None

    while i < close_idx:
        c = text[i]
        skipped = _skip_trivia(text, i)
        if skipped is not None:
            i = skipped
            continue
        if c.isspace():
            i += 1
            continue
        if c == "," and depth == 0:
            finish(i)
            i += 1
            continue
        if start is None:
            start = i
        if c == '"':
            i = _skip_string(text, i)
            end = i
            continue
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
        i += 1
        end = i
    finish(None)
    return items


def _line_start(text: str, i: int) -> int:
    return text.rfind("\n", 0, i) + 1


def _line_end(text: str, i: int) -> int:
    """Offset just past the newline ending the line containing ``i``."""
    j = text.find("\n", i)
    return len(text) if j < 0 else j + 1


def _indent_of(text: str, i: int) -> str:
    ls = _line_start(text, i)
    m = re.match(r"[ \t]*", text[ls:])
    return m.group(0) if m else ""


def _attached_start(text: str, line_start: int) -> int:
    """Move ``line_start`` up over directly preceding comment/attribute lines."""
    while line_start > 0:
        prev = _line_start(text, line_start - 1)
        stripped = text[prev:line_start].strip()
        if stripped.startswith(("//", "#[")) and not stripped.startswith("//!"):
            line_start = prev
        else:
            break
    return line_start


def _find_const_array(text: str, const: str, file: Path) -> tuple[int, int]:
    m = re.search(rf"\bconst\s+{re.escape(const)}\s*:[^=;]*=\s*&\s*\[", text)
    if not m:
        raise RegistrationError(
            f"{file}: cannot find `const {const}: &[...] = &[ ... ];`"
        )
    open_idx = m.end() - 1
    return open_idx, _match_close(text, open_idx)


def _insert_array_item(
    text: str,
    open_idx: int,
    close_idx: int,
    key: tuple[str, ...],
    render,
) -> str:
    """Insert an item into a vertically formatted Rust array literal.

    ``render(indent)`` returns the item's text (possibly several lines, without
    trailing comma or newline).  The item goes before the first existing item
    whose key is greater (so an unsorted list is handled gracefully), or after
    the last one.
    """
    items = _array_items(text, open_idx, close_idx)
    if any(it.key == key for it in items):
        return text
    if items:
        indent = _indent_of(text, items[0].start)
    else:
        indent = _indent_of(text, open_idx) + "    "
    block = render(indent)

    for it in items:
        if it.key > key:
            ls = _line_start(text, it.start)
            if text[ls:it.start].strip():
                raise RegistrationError(
                    "array items are not one per line; refusing to guess the layout"
                )
            at = _attached_start(text, ls)
            return text[:at] + block + ",\n" + text[at:]

    if not items:
        if "\n" not in text[open_idx:close_idx]:
            # `&[]` on one line: open it up.
            outer = _indent_of(text, open_idx)
            return (
                text[: open_idx + 1]
                + "\n"
                + block
                + ",\n"
                + outer
                + text[close_idx:]
            )
        at = _line_start(text, close_idx)
        return text[:at] + block + ",\n" + text[at:]

    last = items[-1]
    after = last.comma + 1 if last.comma is not None else last.end
    rest = text[after:_line_end(text, after)].strip()
    if rest and not rest.startswith("//"):
        raise RegistrationError(
            "array items are not one per line; refusing to guess the layout"
        )
    if last.comma is None:
        text = text[: last.end] + "," + text[last.end :]
        after = last.end + 1
        trailing = ""
    else:
        trailing = ","
    at = _line_end(text, after)
    if at == len(text) and not text.endswith("\n"):
        text += "\n"
        at = len(text)
    return text[:at] + block + trailing + "\n" + text[at:]


def _rust_str_item(value: str):
    return lambda indent: f'{indent}"{value}"'


def _rust_tuple_item(a: str, b: str):
    def render(indent: str) -> str:
        one_line = f'("{a}", "{b}")'
        # rustfmt's `fn_call_width` (60) applies to tuples too: wider tuples are
        # broken one element per line (see METRIC_SAMPLERS' ENA entries).
        if len(one_line) <= 60 and len(indent) + len(one_line) + 1 <= 100:
            return indent + one_line
        inner = indent + "    "
        return f'{indent}(\n{inner}"{a}",\n{inner}"{b}",\n{indent})'

    return render


# --------------------------------------------------------------------------
# Individual edits.  Each takes the current text and returns the new text
# (identical when nothing needs to change).
# --------------------------------------------------------------------------


def _edit_build_rs(text: str, reg: Registration, file: Path) -> str:
    m = _SOURCES_RE.search(text)
    if not m:
        raise RegistrationError(
            f"{file}: cannot find `const SOURCES: &[(&str, &str)] = &[ ... ];`"
        )
    open_idx = m.end() - 1
    close_idx = _match_close(text, open_idx)
    return _insert_array_item(
        text,
        open_idx,
        close_idx,
        (reg.group, reg.sampler),
        _rust_tuple_item(reg.group, reg.sampler),
    )


_MOD_DECL_RE = re.compile(
    r"^(?:pub(?:\([^)]*\))?\s+)?mod\s+([A-Za-z_][A-Za-z0-9_]*)\s*;[ \t]*(?://.*)?$",
    re.M,
)


def _edit_mod_list(text: str, name: str) -> str:
    """Add ``mod <name>;`` among the top-level ``mod x;`` lines of a module file."""
    decls = list(_MOD_DECL_RE.finditer(text))
    if any(m.group(1) == name for m in decls):
        return text
    if re.search(rf"^(?:pub(?:\([^)]*\))?\s+)?mod\s+{re.escape(name)}\s*\{{", text, re.M):
        return text  # inline module of that name already present
    line = f"mod {name};\n"
    for m in decls:
        if m.group(1) > name:
            at = _attached_start(text, m.start())
            return text[:at] + line + text[at:]
    if decls:
        at = _line_end(text, decls[-1].start())
        if at == len(text) and not text.endswith("\n"):
            return text + "\n" + line
        return text[:at] + line + text[at:]
    # No `mod` lines at all: put it after any leading inner doc comment /
    # inner attributes.
    lines = text.splitlines(keepends=True)
    k = 0
    while k < len(lines) and lines[k].lstrip().startswith(("//!", "#![")):
        k += 1
    head = "".join(lines[:k])
    rest = "".join(lines[k:])
    if head and not head.endswith("\n"):
        head += "\n"
    if head:
        return head + "\n" + line + ("\n" if rest.strip() else "") + rest.lstrip("\n")
    return line + ("\n" + rest.lstrip("\n") if rest.strip() else "")


_STATS_RE = re.compile(
    r'^[ \t]*#\[cfg\(\s*not\(\s*target_os\s*=\s*"linux"\s*\)\s*\)\][ \t]*\n'
    r"(?:[ \t]*(?://[^\n]*|#\[[^\n]*\])[ \t]*\n)*"
    r"[ \t]*(?:pub(?:\([^)]*\))?\s+)?mod\s+stats\s*\{",
    re.M,
)

_INNER_MOD_RE = re.compile(r"^([ \t]*)mod\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{", re.M)


def _stats_block(reg: Registration, indent: str) -> str:
    s = reg.sampler
    return (
        f"{indent}mod {s} {{\n"
        f'{indent}    include!("./linux/{s}/stats.rs");\n'
        f"{indent}}}\n"
    )


def _edit_group_mod(text: str, reg: Registration, file: Path) -> str:
    m = _STATS_RE.search(text)
    if not m:
        raise RegistrationError(
            f"{file}: cannot find the non-Linux fallback "
            '`#[cfg(not(target_os = "linux"))] mod stats { ... }` block; '
            "add one by hand (see blockio/mod.rs) and re-run"
        )
    open_idx = m.end() - 1
    close_idx = _match_close(text, open_idx)

    # Top-level `mod x { ... }` blocks inside the stats block.
    blocks: list[tuple[str, int, int, str]] = []  # name, line start, end, indent
    i = open_idx + 1
    while i < close_idx:
        c = text[i]
        if c == '"':
            i = _skip_string(text, i)
            continue
        skipped = _skip_trivia(text, i)
        if skipped is not None:
            i = skipped
            continue
        if c in _OPEN:
            mm = _INNER_MOD_RE.match(text, _line_start(text, i))
            end = _match_close(text, i)
            if c == "{" and mm and mm.end() - 1 == i:
                blocks.append((mm.group(2), mm.start(), end, mm.group(1)))
            i = end + 1
            continue
        i += 1

    if any(name == reg.sampler for name, *_ in blocks):
        return text
    if not blocks:
        raise RegistrationError(
            f"{file}: the fallback `mod stats {{ ... }}` block has no per-sampler "
            "`mod <sampler> { include!(...); }` entries (single-sampler group?); "
            "cannot place the new sampler's stats"
        )
    indent = blocks[0][3]
    new_block = _stats_block(reg, indent)
    for name, start, _end, _indent in blocks:
        if name > reg.sampler:
            at = _attached_start(text, start)
            return text[:at] + new_block + "\n" + text[at:]
    last_end = blocks[-1][2]
    at = _line_end(text, last_end)
    return text[:at] + "\n" + new_block + text[at:]


def _new_group_mod(reg: Registration) -> str:
    return (
        '#[cfg(target_os = "linux")]\n'
        "mod linux;\n"
        "\n"
        '#[cfg(not(target_os = "linux"))]\n'
        "mod stats {\n" + _stats_block(reg, "    ") + "}\n"
    )


_TOML_SAMPLER_HDR_RE = re.compile(r"^[ \t]*\[samplers\.([A-Za-z0-9_\-]+)\][ \t]*(?:#.*)?$", re.M)


def _edit_agent_toml(text: str, reg: Registration) -> str:
    name = reg.name
    present = re.compile(
        rf"^[ \t]*#?[ \t]*\[samplers\.{re.escape(name)}\][ \t]*(?:#.*)?$", re.M
    )
    if present.search(text):
        return text
    block = (f"# {reg.description}\n" if reg.description.strip() else "") + (
        f"[samplers.{name}]\n"
    )
    headers = list(_TOML_SAMPLER_HDR_RE.finditer(text))
    for h in headers:
        if h.group(1) > name:
            at = h.start()
            # move up over the section's own comment block
            while at > 0:
                prev = _line_start(text, at - 1)
                if text[prev:at].lstrip().startswith("#"):
                    at = prev
                else:
                    break
            return text[:at] + block + "\n" + text[at:]
    # Append after everything else.
    stripped = text.rstrip("\n")
    sep = "\n\n" if stripped else ""
    return stripped + sep + block


def _edit_context_rs(text: str, reg: Registration, file: Path) -> str:
    name = reg.name

    # Current sampler universe, to decide which metrics need an explicit row.
    o, c = _find_const_array(text, "EXPECTED_SUBSYSTEMS", file)
    universe = {it.key[0] for it in _array_items(text, o, c) if it.key}
    text = _insert_array_item(text, o, c, (name,), _rust_str_item(name))

    o, c = _find_const_array(text, "BPF_SAMPLERS", file)
    text = _insert_array_item(text, o, c, (name,), _rust_str_item(name))

    o, c = _find_const_array(text, "METRIC_SAMPLERS", file)
    existing = {it.key[0]: it.key[1:] for it in _array_items(text, o, c) if it.key}
    ambiguous: set[str] = set()
    try:
        ao, ac = _find_const_array(text, "AMBIGUOUS_METRICS", file)
        ambiguous = {it.key[0] for it in _array_items(text, ao, ac) if it.key}
    except RegistrationError:
        pass

    universe = universe | {name}
    for metric in sorted(set(reg.metric_names)):
        if metric.startswith(_BPF_RUN_PREFIX) or metric in ambiguous:
            continue
        # Rezolus resolves a metric to the longest sampler name that is the
        # metric itself or a `_`-boundary prefix of it; only metrics that do
        # not resolve to this sampler that way need a METRIC_SAMPLERS row.
        candidates = [s for s in universe if metric == s or metric.startswith(s + "_")]
        if candidates and max(candidates, key=len) == name:
            continue
        if metric in existing:
            if existing[metric][:1] == (name,):
                continue
            raise RegistrationError(
                f"{file}: metric {metric!r} is already attributed to sampler "
                f"{existing[metric][0]!r} in METRIC_SAMPLERS; a name declared by two "
                "samplers belongs in AMBIGUOUS_METRICS -- rename the metric or edit "
                "context.rs by hand"
            )
        o, c = _find_const_array(text, "METRIC_SAMPLERS", file)
        text = _insert_array_item(text, o, c, (metric, name), _rust_tuple_item(metric, name))
    return text


_GOLDEN_RE = re.compile(r'\bconst\s+GOLDEN\s*:\s*&str\s*=\s*r(#*)"')


def _json_array(text: str, key: str, lo: int, hi: int, file: Path) -> tuple[int, int, list]:
    m = re.compile(rf'"{re.escape(key)}"\s*:\s*\[').search(text, lo, hi)
    if not m:
        raise RegistrationError(f"{file}: cannot find {key!r} in the GOLDEN document")
    open_idx = m.end() - 1
    close_idx = text.find("]", open_idx)
    if close_idx < 0 or close_idx > hi:
        raise RegistrationError(f"{file}: unterminated {key!r} array in GOLDEN")
    try:
        values = json.loads(text[open_idx : close_idx + 1])
    except json.JSONDecodeError as e:
        raise RegistrationError(f"{file}: {key!r} in GOLDEN is not valid JSON: {e}") from e
    return open_idx, close_idx, values


def _edit_golden_rs(text: str, reg: Registration, file: Path) -> str:
    name = reg.name
    m = _GOLDEN_RE.search(text)
    if not m:
        raise RegistrationError(f'{file}: cannot find `const GOLDEN: &str = r#"...`')
    lo = m.end()
    hi = text.find('"' + m.group(1), lo)
    if hi < 0:
        raise RegistrationError(f"{file}: unterminated GOLDEN raw string")

    _, _, present = _json_array(text, "subsystems_present", lo, hi, file)
    o, c, absent = _json_array(text, "subsystems_absent", lo, hi, file)
    if name in present or name in absent:
        return text

    # Element positions (one JSON string per line, as serde_json pretty prints).
    elems = [(mm.group(1), mm.start(), mm.end()) for mm in _STRING_LIT_RE.finditer(text, o, c)]
    new = json.dumps(name)
    if not elems:
        outer = _indent_of(text, o)
        return text[: o + 1] + "\n" + outer + "  " + new + "\n" + outer + text[c:]
    indent = _indent_of(text, elems[0][1])
    for value, start, _end in elems:
        if value > name:
            ls = _line_start(text, start)
            return text[:ls] + indent + new + ",\n" + text[ls:]
    _value, _start, end = elems[-1]
    # The old last element gains a comma; the new one is the last.
    at = _line_end(text, end)
    return text[:end] + "," + text[end:at] + indent + new + "\n" + text[at:]


# --------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------


@dataclass
class _Plan:
    changes: dict[Path, str]
    notes: list[str]
    created: set[Path]


def _read(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RegistrationError(f"cannot read {path}: {e}") from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RegistrationError(f"{path} is not UTF-8: {e}") from e


def _edit(path: Path, edit) -> str:
    """Apply ``edit`` to the file's text, preserving CRLF line endings."""
    old = _read(path)
    crlf = "\r\n" in old
    text = old.replace("\r\n", "\n") if crlf else old
    new = edit(text)
    if new == text:
        return old
    return new.replace("\n", "\r\n") if crlf else new


def _compute(root: Path, reg: Registration) -> _Plan:
    root = Path(root)
    if not is_rezolus_tree(root):
        raise RegistrationError(
            f"{root} is not a Rezolus tree (no build.rs SOURCES); nothing to register"
        )
    changes: dict[Path, str] = {}
    notes: list[str] = []
    created: set[Path] = set()

    def record(path: Path, new: str) -> None:
        if not path.exists() or _read(path) != new:
            changes[path] = new
            if not path.exists():
                created.add(path)

    # 1. build.rs
    p = root / BUILD_RS
    record(p, _edit(p, lambda t: _edit_build_rs(t, reg, p)))

    # 2./3. group modules
    group_dir = root / SAMPLERS_DIR / reg.group
    group_mod = group_dir / "mod.rs"
    linux_mod = group_dir / "linux" / "mod.rs"
    samplers_mod = root / SAMPLERS_MOD
    new_group = not group_mod.exists()

    if linux_mod.exists():
        record(linux_mod, _edit(linux_mod, lambda t: _edit_mod_list(t, reg.sampler)))
    elif new_group:
        record(linux_mod, f"mod {reg.sampler};\n")
    else:
        raise RegistrationError(
            f"{linux_mod} does not exist although group {reg.group!r} does "
            f"({group_mod}); this group has no Linux samplers to join"
        )

    if new_group:
        record(group_mod, _new_group_mod(reg))
        if not samplers_mod.exists():
            raise RegistrationError(f"{samplers_mod} does not exist")
        record(samplers_mod, _edit(samplers_mod, lambda t: _edit_mod_list(t, reg.group)))
    else:
        record(group_mod, _edit(group_mod, lambda t: _edit_group_mod(t, reg, group_mod)))
        if samplers_mod.exists():
            text = _read(samplers_mod)
            if not re.search(
                rf"^(?:pub(?:\([^)]*\))?\s+)?mod\s+{re.escape(reg.group)}\s*;", text, re.M
            ):
                record(
                    samplers_mod,
                    _edit(samplers_mod, lambda t: _edit_mod_list(t, reg.group)),
                )

    # 4. config/agent.toml
    p = root / AGENT_TOML
    if not p.exists():
        raise RegistrationError(f"{p} does not exist")
    record(p, _edit(p, lambda t: _edit_agent_toml(t, reg)))

    # 5./6. analysis tables (optional in partial checkouts)
    p = root / CONTEXT_RS
    if p.exists():
        record(p, _edit(p, lambda t: _edit_context_rs(t, reg, p)))
    else:
        notes.append(f"{CONTEXT_RS} not found; skipped (partial checkout?)")
    p = root / GOLDEN_RS
    if p.exists():
        record(p, _edit(p, lambda t: _edit_golden_rs(t, reg, p)))
    else:
        notes.append(f"{GOLDEN_RS} not found; skipped (partial checkout?)")

    return _Plan(changes, notes, created)


def plan(root: Path, reg: Registration) -> dict[Path, str]:
    """New full text of every file that must change (empty if registered)."""
    return _compute(Path(root), reg).changes


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def _restore(path: Path, original: bytes | None, mode: int | None) -> None:
    if original is None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        return
    try:
        _atomic_write(path, original, mode if mode is not None else _default_mode())
    except OSError:
        # Last resort: overwrite in place.
        with open(path, "wb") as f:
            f.write(original)
            f.flush()
            os.fsync(f.fileno())


def _write_all(changes: dict[Path, str]) -> list[Path]:
    backups: list[tuple[Path, bytes | None, int | None]] = []
    made_dirs: list[Path] = []
    try:
        for path, text in changes.items():
            if path.exists():
                original: bytes | None = path.read_bytes()
                mode: int | None = stat.S_IMODE(path.stat().st_mode)
            else:
                original, mode = None, None
                missing = []
                d = path.parent
                while not d.exists():
                    missing.append(d)
                    d = d.parent
                for d in reversed(missing):
                    d.mkdir()
                    made_dirs.append(d)
            _atomic_write(
                path, text.encode("utf-8"), mode if mode is not None else _default_mode()
            )
            backups.append((path, original, mode))
    except BaseException:
        errors = []
        for path, original, mode in reversed(backups):
            try:
                _restore(path, original, mode)
            except OSError as e:  # pragma: no cover - best effort
                errors.append(f"{path}: {e}")
        for d in reversed(made_dirs):
            try:
                d.rmdir()
            except OSError:
                pass
        if errors:  # pragma: no cover
            print(
                "register: rollback incomplete: " + "; ".join(errors), file=sys.stderr
            )
        raise
    return [p for p, _, _ in backups]


def apply(root: Path, reg: Registration) -> list[Path]:
    """Compute the whole plan, then write it; all-or-nothing.  Returns changed paths."""
    p = _compute(Path(root), reg)
    for note in p.notes:
        print(f"register: note: {note}", file=sys.stderr)
    if not p.changes:
        return []
    return _write_all(p.changes)


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="register.py",
        description="Register a rendered BPF sampler in a Rezolus checkout.",
    )
    ap.add_argument("--root", default=".", help="Rezolus checkout (default: .)")
    ap.add_argument("--group", help="sampler group, e.g. network")
    ap.add_argument("--sampler", help="sampler name within the group, e.g. traffic")
    ap.add_argument("--description", default="", help="one line for config/agent.toml")
    ap.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="NAME",
        help="a metric family the sampler declares (repeatable)",
    )
    ap.add_argument(
        "--answers",
        metavar="FILE",
        help="read the registration from a Copier answers file instead",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    root = Path(args.root)

    if args.answers and (args.group or args.sampler or args.metric):
        ap.error("--answers cannot be combined with --group/--sampler/--metric")
    if not args.answers and not (args.group and args.sampler):
        ap.error("--group and --sampler are required (or use --answers FILE)")

    if not is_rezolus_tree(root):
        # `copier update` runs tasks in temporary copies that are not Rezolus
        # trees; that is normal, not an error.
        print(
            f"register: {root} is not a Rezolus tree (no build.rs SOURCES); "
            "nothing to register"
        )
        return 0

    try:
        if args.answers:
            reg = registration_from_answers(Path(args.answers), root)
        else:
            reg = Registration(
                group=args.group,
                sampler=args.sampler,
                description=args.description,
                metric_names=tuple(args.metric),
            )
        existed = {path: path.exists() for path in plan(root, reg)}
        changed = apply(root, reg)
    except RegistrationError as e:
        print(f"register: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"register: error: write failed, all files restored: {e}", file=sys.stderr)
        return 1

    if not changed:
        print(f"register: {reg.name} already registered")
        return 0
    for path in changed:
        try:
            shown = path.relative_to(root)
        except ValueError:
            shown = path
        verb = "updated" if existed.get(path, True) else "created"
        print(f"register: {verb} {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
