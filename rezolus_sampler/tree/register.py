"""Register a rendered BPF sampler in a Rezolus checkout, and undo that.

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

:func:`plan` computes the new text of every file without touching the disk.
It reconciles rather than only adds: ``METRIC_SAMPLERS`` rows of this sampler
that its metrics no longer need go, and the ``agent.toml`` comment follows a
changed description, so re-registering after ``copier update`` gives the text
a fresh copy gives. Running it twice changes nothing. :func:`plan_removal` is
the inverse of a registration (``remove(register(tree)) == tree``). Writes go
through the rollback journal (:mod:`rezolus_sampler.tree.journal`): all files
or none.

Copier's task (``hooks/register.py``) calls :func:`main`; ``rezolus-sampler
remove`` is :mod:`rezolus_sampler.tree.remove`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rezolus_sampler.tree.journal import JOURNAL, Journal, JournalError, atomic_write

__all__ = [
    "Registration",
    "RegistrationError",
    "is_rezolus_tree",
    "tree_refusal",
    "plan",
    "plan_removal",
    "apply",
    "main",
    "registration_from_answers",
]

# prove.py's --write-doc writes through the same atomic write
_atomic_write = atomic_write

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
CARGO_TOML = Path("Cargo.toml")
SAMPLERS_DIR = Path("src/agent/samplers")
SAMPLERS_MOD = SAMPLERS_DIR / "mod.rs"
AGENT_TOML = Path("config/agent.toml")
CONTEXT_RS = Path("src/analysis/extract/context.rs")
GOLDEN_RS = Path("src/analysis/extract/golden.rs")

_SOURCES_RE = re.compile(r"\bconst\s+SOURCES\s*:\s*&\s*\[[^=;]*=\s*&\s*\[")
_PACKAGE_RE = re.compile(r'^\[package\][^\[]*?^name\s*=\s*"rezolus"', re.M | re.S)


def _missing_identity(root: Path) -> list[str]:
    """What the root of a Rezolus checkout has and `root` lacks."""
    root = Path(root)
    missing = []
    try:
        cargo = (root / CARGO_TOML).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        cargo = ""
    if not _PACKAGE_RE.search(cargo):
        missing.append('Cargo.toml with [package] name = "rezolus"')
    try:
        build = (root / BUILD_RS).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        build = None
    if build is None:
        missing.append("build.rs")
    elif not _SOURCES_RE.search(build):
        missing.append("build.rs with `const SOURCES: &[(&str, &str)]`")
    if not (root / SAMPLERS_MOD).is_file():
        missing.append(str(SAMPLERS_MOD))
    return missing


def tree_refusal(root: Path) -> str:
    """'' at the root of a Rezolus checkout, else one line naming what was looked for."""
    root = Path(root).absolute()
    missing = _missing_identity(root)
    if not missing:
        return ""
    for parent in root.parents:
        if not _missing_identity(parent):
            return (
                f"{root} is inside the Rezolus checkout {parent}, not at its root; "
                f"give {parent} as the destination"
            )
    return f"{root} is not the root of a Rezolus checkout: no {'; no '.join(missing)}"


def is_rezolus_tree(root: Path) -> bool:
    """True at the root of a Rezolus checkout (Cargo.toml, build.rs SOURCES, samplers/mod.rs)."""
    return not _missing_identity(root)


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


def _remove_array_item(text: str, const: str, key: tuple[str, ...], file: Path) -> str:
    """Remove the item `key` of a one-item-per-line Rust array (inverse of
    `_insert_array_item`: when the item was last without a trailing comma, the
    comma it gave its predecessor goes too)."""
    open_idx, close_idx = _find_const_array(text, const, file)
    items = _array_items(text, open_idx, close_idx)
    for k, it in enumerate(items):
        if it.key == key:
            break
    else:
        return text
    start = _line_start(text, it.start)
    if text[start : it.start].strip():
        raise RegistrationError(
            f"{file}: {const} items are not one per line; remove {key} by hand"
        )
    end = _line_end(text, it.comma if it.comma is not None else it.end)
    text = text[:start] + text[end:]
    if it.comma is None and k > 0 and items[k - 1].comma is not None:
        comma = items[k - 1].comma
        text = text[:comma] + text[comma + 1 :]
    return text


def _remove_mod_line(text: str, name: str) -> str:
    """Remove the `mod <name>;` line (inverse of `_edit_mod_list`)."""
    for m in _MOD_DECL_RE.finditer(text):
        if m.group(1) == name:
            return text[: m.start()] + text[_line_end(text, m.start()) :]
    return text


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


def _stats_blocks(text: str, file: Path) -> list[tuple[str, int, int, str]] | None:
    """The `mod <sampler> { ... }` blocks in the non-Linux `mod stats { ... }`
    block: (name, line start, index of the closing brace, indent); None when the
    file has no such stats block."""
    m = _STATS_RE.search(text)
    if not m:
        return None
    open_idx = m.end() - 1
    close_idx = _match_close(text, open_idx)
    blocks: list[tuple[str, int, int, str]] = []
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
    return blocks


def _edit_group_mod(text: str, reg: Registration, file: Path) -> str:
    blocks = _stats_blocks(text, file)
    if blocks is None:
        raise RegistrationError(
            f"{file}: cannot find the non-Linux fallback "
            '`#[cfg(not(target_os = "linux"))] mod stats { ... }` block; '
            "add one by hand (see blockio/mod.rs) and re-run"
        )
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


def _remove_group_mod(text: str, sampler: str, file: Path) -> str:
    """Remove `mod <sampler> { include!(...) }` from the stats block and the one
    blank line its insertion added (inverse of `_edit_group_mod`)."""
    blocks = _stats_blocks(text, file) or []
    for name, start, close, _indent in blocks:
        if name == sampler:
            break
    else:
        return text
    end = _line_end(text, close)
    after = text[end:_line_end(text, end)]
    if end < len(text) and not after.strip():
        end = _line_end(text, end)
    elif start > 0 and not text[_line_start(text, start - 1) : start].strip():
        start = _line_start(text, start - 1)
    return text[:start] + text[end:]


def _new_group_mod(reg: Registration) -> str:
    return (
        '#[cfg(target_os = "linux")]\n'
        "mod linux;\n"
        "\n"
        '#[cfg(not(target_os = "linux"))]\n'
        "mod stats {\n" + _stats_block(reg, "    ") + "}\n"
    )


_TOML_SAMPLER_HDR_RE = re.compile(r"^[ \t]*\[samplers\.([A-Za-z0-9_\-]+)\][ \t]*(?:#.*)?$", re.M)


def _toml_header(text: str, name: str) -> re.Match | None:
    return re.search(rf"^[ \t]*\[samplers\.{re.escape(name)}\][ \t]*(?:#.*)?$", text, re.M)


def _edit_agent_toml(text: str, reg: Registration, previous: str | None = None) -> str:
    """Add `# <description>` + `[samplers.<name>]`; when the section exists and its
    comment is the `previous` description this sampler was registered with, the
    comment follows the new description."""
    name = reg.name
    header = _toml_header(text, name)
    if header:
        if previous is None or previous == reg.description:
            return text
        above = _line_start(text, header.start())
        if above == 0:
            return text
        line_at = _line_start(text, above - 1)
        if text[line_at:above] != f"# {previous}\n":
            return text  # the comment was edited by hand: it is the user's now
        new_line = f"# {reg.description}\n" if reg.description.strip() else ""
        return text[:line_at] + new_line + text[above:]
    if re.search(rf"^[ \t]*#[ \t]*\[samplers\.{re.escape(name)}\]", text, re.M):
        return text  # commented out by hand: the user's choice
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
    # Append after everything else, one blank line apart.
    if not text:
        return block
    return text + ("\n" if text.endswith("\n") else "\n\n") + block


def _remove_agent_toml(text: str, name: str) -> str:
    """Remove `[samplers.<name>]` with its comment block and keys (inverse of the edit)."""
    header = _toml_header(text, name)
    if not header:
        return text
    start = _line_start(text, header.start())
    while start > 0:
        prev = _line_start(text, start - 1)
        if text[prev:start].lstrip().startswith("#"):
            start = prev
        else:
            break
    end = _line_end(text, header.start())
    while end < len(text):
        line = text[end:_line_end(text, end)]
        if not line.strip() or line.lstrip().startswith(("[", "#")):
            break
        end = _line_end(text, end)  # a key of this section
    if end < len(text) and not text[end:_line_end(text, end)].strip():
        return text[:start] + text[_line_end(text, end):]
    if text[:start].endswith("\n\n"):
        start -= 1  # the section was appended, one blank line apart
    return text[:start] + text[end:]


def _metric_rows_needed(text: str, reg: Registration, file: Path) -> list[str]:
    """The metrics of `reg` that need an explicit METRIC_SAMPLERS row."""
    name = reg.name
    o, c = _find_const_array(text, "EXPECTED_SUBSYSTEMS", file)
    universe = {it.key[0] for it in _array_items(text, o, c) if it.key} | {name}
    ambiguous: set[str] = set()
    try:
        ao, ac = _find_const_array(text, "AMBIGUOUS_METRICS", file)
        ambiguous = {it.key[0] for it in _array_items(text, ao, ac) if it.key}
    except RegistrationError:
        pass
    needed = []
    for metric in sorted(set(reg.metric_names)):
        if metric.startswith(_BPF_RUN_PREFIX) or metric in ambiguous:
            continue
        # Rezolus resolves a metric to the longest sampler name that is the
        # metric itself or a `_`-boundary prefix of it; only metrics that do
        # not resolve to this sampler that way need a METRIC_SAMPLERS row.
        candidates = [s for s in universe if metric == s or metric.startswith(s + "_")]
        if candidates and max(candidates, key=len) == name:
            continue
        needed.append(metric)
    return needed


def _edit_context_rs(text: str, reg: Registration, file: Path) -> str:
    name = reg.name
    needed = _metric_rows_needed(text, reg, file)

    o, c = _find_const_array(text, "EXPECTED_SUBSYSTEMS", file)
    text = _insert_array_item(text, o, c, (name,), _rust_str_item(name))
    o, c = _find_const_array(text, "BPF_SAMPLERS", file)
    text = _insert_array_item(text, o, c, (name,), _rust_str_item(name))

    # Rows of this sampler its metrics no longer need (renamed or removed metrics).
    o, c = _find_const_array(text, "METRIC_SAMPLERS", file)
    for it in _array_items(text, o, c):
        if len(it.key) == 2 and it.key[1] == name and it.key[0] not in needed:
            text = _remove_array_item(text, "METRIC_SAMPLERS", it.key, file)

    o, c = _find_const_array(text, "METRIC_SAMPLERS", file)
    existing = {it.key[0]: it.key[1:] for it in _array_items(text, o, c) if it.key}
    for metric in needed:
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


def _remove_context_rs(text: str, name: str, file: Path) -> str:
    for const in ("EXPECTED_SUBSYSTEMS", "BPF_SAMPLERS"):
        text = _remove_array_item(text, const, (name,), file)
    o, c = _find_const_array(text, "METRIC_SAMPLERS", file)
    for it in _array_items(text, o, c):
        if len(it.key) == 2 and it.key[1] == name:
            text = _remove_array_item(text, "METRIC_SAMPLERS", it.key, file)
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


def _remove_golden_rs(text: str, name: str, file: Path) -> str:
    """Remove `name` from `subsystems_absent` (inverse of `_edit_golden_rs`)."""
    m = _GOLDEN_RE.search(text)
    if not m:
        raise RegistrationError(f'{file}: cannot find `const GOLDEN: &str = r#"...`')
    lo = m.end()
    hi = text.find('"' + m.group(1), lo)
    if hi < 0:
        raise RegistrationError(f"{file}: unterminated GOLDEN raw string")
    o, c, absent = _json_array(text, "subsystems_absent", lo, hi, file)
    if name not in absent:
        return text
    elems = [(mm.group(1), mm.start(), mm.end()) for mm in _STRING_LIT_RE.finditer(text, o, c)]
    if len(elems) == 1:
        return text[: o + 1] + text[c:]
    k = next(i for i, (value, _s, _e) in enumerate(elems) if value == name)
    _value, start, end = elems[k]
    line_at = _line_start(text, start)
    if text[line_at:start].strip():
        raise RegistrationError(
            f"{file}: subsystems_absent is not one name per line; remove {name!r} by hand"
        )
    text = text[:line_at] + text[_line_end(text, end) :]
    if k == len(elems) - 1:  # it was last: its predecessor gave up its comma
        prev_end = elems[k - 1][2]
        if text[prev_end : prev_end + 1] == ",":
            text = text[:prev_end] + text[prev_end + 1 :]
    return text


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


def _compute(root: Path, reg: Registration, previous_description: str | None = None) -> _Plan:
    root = Path(root)
    refusal = tree_refusal(root)
    if refusal:
        raise RegistrationError(refusal)
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
        record(samplers_mod, _edit(samplers_mod, lambda t: _edit_mod_list(t, reg.group)))
    else:
        record(group_mod, _edit(group_mod, lambda t: _edit_group_mod(t, reg, group_mod)))
        text = _read(samplers_mod)
        if not re.search(
            rf"^(?:pub(?:\([^)]*\))?\s+)?mod\s+{re.escape(reg.group)}\s*;", text, re.M
        ):
            record(samplers_mod, _edit(samplers_mod, lambda t: _edit_mod_list(t, reg.group)))

    # 4. config/agent.toml, 5./6. the analysis lists Rezolus' own tests check
    for rel, edit in (
        (AGENT_TOML, lambda t, p: _edit_agent_toml(t, reg, previous_description)),
        (CONTEXT_RS, lambda t, p: _edit_context_rs(t, reg, p)),
        (GOLDEN_RS, lambda t, p: _edit_golden_rs(t, reg, p)),
    ):
        p = root / rel
        if not p.is_file():
            raise RegistrationError(f"{rel} does not exist; it is one of the files a sampler is registered in")
        record(p, _edit(p, lambda t, p=p, edit=edit: edit(t, p)))

    return _Plan(changes, notes, created)


def plan(
    root: Path, reg: Registration, previous_description: str | None = None
) -> dict[Path, str]:
    """New full text of every file that must change (empty if registered).

    `previous_description`: the description the sampler was registered with, so
    its agent.toml comment can follow a new one."""
    return _compute(Path(root), reg, previous_description).changes


@dataclass
class Removal:
    """What removing one sampler changes: new file texts, and directories to delete."""

    name: str
    changes: dict[Path, str] = field(default_factory=dict)
    remove_dirs: list[Path] = field(default_factory=list)
    group_removed: bool = False


def _group_is_ours(group_dir: Path, sampler: str) -> bool:
    """The group holds this one sampler and exactly the files a registration created
    for a new group, so deleting the group restores the tree (nothing hand-written goes)."""
    group_mod, linux_dir = group_dir / "mod.rs", group_dir / "linux"
    try:
        if group_mod.read_text(encoding="utf-8") != _new_group_mod(Registration(group_dir.name, sampler, "")):
            return False
        if (linux_dir / "mod.rs").read_text(encoding="utf-8") != f"mod {sampler};\n":
            return False
    except (OSError, UnicodeDecodeError):
        return False
    return {p.name for p in group_dir.iterdir()} == {"mod.rs", "linux"} and {
        p.name for p in linux_dir.iterdir()
    } <= {"mod.rs", sampler}


def plan_removal(root: Path, group: str, sampler: str) -> Removal:
    """The inverse of registering `<group>/<sampler>`, plus deleting its directory:
    every entry naming it goes (build.rs, module lists, agent.toml section, the
    analysis lists, all its METRIC_SAMPLERS rows), and a group that only ever held
    it (created by a registration) goes with `mod <group>;`."""
    root = Path(root)
    refusal = tree_refusal(root)
    if refusal:
        raise RegistrationError(refusal)
    reg = Registration(group, sampler, "")  # validates the names
    out = Removal(reg.name)

    def record(rel: Path, edit) -> None:
        p = root / rel
        if not p.is_file():
            return
        new = _edit(p, lambda t: edit(t, p))
        if new != _read(p):
            out.changes[p] = new

    record(BUILD_RS, lambda t, p: _remove_array_item(t, "SOURCES", (group, sampler), p))
    group_dir = root / SAMPLERS_DIR / group
    sampler_dir = group_dir / "linux" / sampler
    if group_dir.is_dir() and _group_is_ours(group_dir, sampler):
        out.group_removed = True
        out.remove_dirs.append(group_dir)
        record(SAMPLERS_MOD, lambda t, p: _remove_mod_line(t, group))
    else:
        record(group_dir.relative_to(root) / "linux" / "mod.rs", lambda t, p: _remove_mod_line(t, sampler))
        record(group_dir.relative_to(root) / "mod.rs", lambda t, p: _remove_group_mod(t, sampler, p))
        if sampler_dir.is_dir():
            out.remove_dirs.append(sampler_dir)
    record(AGENT_TOML, lambda t, p: _remove_agent_toml(t, reg.name))
    record(CONTEXT_RS, lambda t, p: _remove_context_rs(t, reg.name, p))
    record(GOLDEN_RS, lambda t, p: _remove_golden_rs(t, reg.name, p))
    return out


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def write_changes(journal: Journal, changes: dict[Path, str]) -> None:
    """Write every change under `journal` (originals saved first, in one journal write)."""
    try:
        journal.record(changes)
    except JournalError as err:
        raise RegistrationError(str(err)) from None
    for path, text in changes.items():
        try:
            journal.write(path, text.encode("utf-8"))
        except JournalError as err:
            raise RegistrationError(str(err)) from None
        except OSError as err:
            rel = path.relative_to(journal.root) if path.is_relative_to(journal.root) else path
            raise RegistrationError(f"cannot write {rel}: {err.strerror or err}") from None


def apply(
    root: Path,
    reg: Registration,
    journal: Journal | None = None,
    previous_description: str | None = None,
) -> list[Path]:
    """Compute the whole plan, then write it; all files or none. Returns changed paths.

    Without `journal` the registration is its own operation (journal begun and
    committed here, rolled back on any failure); with one, the caller commits."""
    p = _compute(Path(root), reg, previous_description)
    for note in p.notes:
        print(f"register: note: {note}", file=sys.stderr)
    if not p.changes:
        return []
    own = journal is None
    if own:
        try:
            journal = Journal.begin(Path(root), "register", reg.name)
        except JournalError as err:
            raise RegistrationError(str(err)) from None
    try:
        write_changes(journal, p.changes)
    except BaseException:
        if own:
            journal.rollback()
        raise
    if own:
        journal.commit()
    return list(p.changes)


# --------------------------------------------------------------------------
# CLI (Copier's task, and registration by hand)
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
    ap.add_argument(
        "--operation",
        default="register",
        help="the Copier operation this task belongs to (copy, update)",
    )
    return ap


def _shown(root: Path, path: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    root = Path(args.root).absolute()

    if args.answers and (args.group or args.sampler or args.metric):
        ap.error("--answers cannot be combined with --group/--sampler/--metric")
    if not args.answers and not (args.group and args.sampler):
        ap.error("--group and --sampler are required (or use --answers FILE)")

    # The preflight (Copier's process, our parent) began the journal and saved
    # the rendered directory's previous state in it: join that operation.
    try:
        journal = Journal.load(root)
    except JournalError as err:
        print(f"rezolus-sampler: {err}", file=sys.stderr)
        return 1
    if journal is not None and journal.owner[0] != os.getppid():
        journal = None if not journal.alive() else journal
        if journal is not None:
            print(
                f"rezolus-sampler: another operation ({journal.operation} of "
                f"{journal.sampler}, pid {journal.owner[0]}) is changing {root}",
                file=sys.stderr,
            )
            return 1
        print(
            f"rezolus-sampler: {root / JOURNAL} is left from an interrupted operation; "
            f"run 'rezolus-sampler recover {root}'",
            file=sys.stderr,
        )
        return 1
    what = journal.operation if journal is not None else "registration"
    where = Path(args.answers or ".").parts
    label = f"{args.group}_{args.sampler}" if args.sampler else "_".join(where[-4:-1:2])

    try:
        recorded = journal.registration if journal is not None else None
        if args.answers and recorded and Path(args.answers).parent == (
            SAMPLERS_DIR / recorded["group"] / "linux" / recorded["sampler"]
        ):
            # The preflight built the model from these same answers a moment ago.
            reg = Registration(**recorded)
        elif args.answers:
            reg = registration_from_answers(Path(args.answers), root)
        else:
            reg = Registration(
                group=args.group,
                sampler=args.sampler,
                description=args.description,
                metric_names=tuple(args.metric),
            )
        label = reg.name
        previous = journal.previous_description() if journal is not None else None
        before = {path: path.exists() for path in plan(root, reg, previous)}
        changed = apply(root, reg, journal, previous)
        if journal is not None:
            journal.commit()
    except (RegistrationError, JournalError, OSError) as err:
        reason = str(err)
        if isinstance(err, OSError):
            reason = f"{err.strerror or err}: {err.filename}"
        undone = "nothing was changed"
        if journal is not None:
            failed = journal.rollback()
            undone = (
                "rendered files and registration rolled back: the tree is as it was"
                if not failed
                else f"rollback incomplete ({', '.join(failed)}); {root / JOURNAL} keeps "
                f"the originals: run 'rezolus-sampler recover {root}'"
            )
        print(f"rezolus-sampler: {what} of {label} failed: {reason}; {undone}", file=sys.stderr)
        return 1

    if not changed:
        print(f"register: {reg.name} already registered")
        return 0
    created = [_shown(root, p) for p in changed if not before.get(p, True)]
    updated = [_shown(root, p) for p in changed if before.get(p, True)]
    parts = [f"updated {', '.join(updated)}"] if updated else []
    parts += [f"created {', '.join(created)}"] if created else []
    print(f"register: {reg.name} registered: {'; '.join(parts)}")
    return 0


def run(argv: list[str] | None = None) -> int:
    """`main` as its own process (Copier's task): SIGINT/SIGTERM/SIGHUP stay
    blocked to the end, so the task is never stopped between two writes; an
    impatient Copier SIGKILLs it, and then its journal is rolled back."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
    return main(argv)


if __name__ == "__main__":
    sys.exit(run())
