"""Rules for the names and text a user gives, and the names already taken.

A user-chosen name ends up in C, in Rust and in the Rezolus files the
registration edits. Generated identifiers are namespaced (suffixes such as
`_BASE`, `_WIDTH`, `_ACQ`, and a per-function namer for locals), so the
only names that can still collide are ones the user's own names become
directly; those are checked here against what is really defined: the
target's vmlinux.h (typedefs, enum constants), the libbpf headers a
sampler includes, the generated files' fixed items, and the Rust names
around `samplers/mod.rs` in the target tree.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

SNAKE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
MAX_NAME_LEN = 32  # group, sampler, map, label and argument names
MAX_METRIC_LEN = 64
MAX_DESCRIPTION_LEN = 200

C_KEYWORDS = frozenset(
    """auto break case char const continue default do double else enum extern float for goto
    if inline int long register restrict return short signed sizeof static struct switch
    typedef union unsigned void volatile while bool true false asm typeof _Bool _Alignas
    _Alignof _Atomic _Complex _Generic _Imaginary _Noreturn _Static_assert _Thread_local""".split()
)
RUST_KEYWORDS = frozenset(
    """as async await break const continue crate dyn else enum extern false fn for if impl in
    let loop match mod move mut pub ref return self static struct super trait true type union
    unsafe use where while abstract become box do final macro override priv try typeof
    unsized virtual yield gen""".split()
)
# Crates every Rust module can name by path; a module of that name makes
# `use std::...` in the enclosing file ambiguous. The target tree's own
# dependencies are added by `tree.scan.rust_reserved`.
RUST_PRELUDE_CRATES = frozenset({"std", "core", "alloc", "crate", "self", "super"})

# Names C code cannot avoid: BPF_PROG's hidden context parameter, the
# licence symbol, and the builtins expressions may use.
C_IMPLICIT = frozenset({"ctx", "LICENSE"})

# Metadata keys Rezolus or metriken already give a meaning to.
RESERVED_LABELS = frozenset({"unit", "acq_group", "sampler", "id", "name", "metric", "description"})


class NameError_(ValueError):
    """A name or text that cannot be used; the message says what would be right."""


def check_name(value: Any, what: str, max_len: int = MAX_NAME_LEN) -> str:
    if value is None or value == "":
        raise NameError_(
            f"give the {what} a name: snake_case, lowercase letters, digits and single "
            f"underscores, starting with a letter (for example 'packet_drops')"
        )
    if not isinstance(value, str) or not SNAKE.match(value):
        shown = repr(value) if not isinstance(value, str) or len(value) <= 60 else repr(value[:57] + "...")
        raise NameError_(
            f"{what} {shown} must be snake_case: lowercase letters, digits and single "
            f"underscores, starting with a letter (for example 'packet_drops')"
        )
    if len(value) > max_len:
        raise NameError_(f"{what} {value[:40]!r}... is {len(value)} characters; the limit is {max_len}")
    if value in C_KEYWORDS or value in RUST_KEYWORDS:
        raise NameError_(f"{what} {value!r} is a C or Rust keyword; choose another name")
    return value


def check_text(value: Any, what: str, max_len: int = MAX_DESCRIPTION_LEN) -> str:
    """One line of text for C comments, Rust strings, build.rs' parser and TOML comments."""
    if not isinstance(value, str) or not value.strip():
        raise NameError_(f"{what} must be a non-empty line of text")
    controls = sorted({c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")})
    if controls:
        shown = ", ".join(f"U+{ord(c):04X}" for c in controls[:4])
        raise NameError_(
            f"{what} contains control or invisible formatting characters ({shown}); "
            f"write plain text on one line"
        )
    bad = [c for c in ('"', "\\", "`") if c in value]
    bad += [s for s in (")]", "*/", "/*") if s in value]
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise NameError_(
            f"{what} contains {shown}: these break the generated C/Rust or "
            f"Rezolus' build.rs metric parser; rephrase without them"
        )
    if len(value) > max_len:
        raise NameError_(f"{what} is {len(value)} characters; keep it under {max_len}")
    return " ".join(value.split())


class Namer:
    """Unique identifiers in one C scope: a preferred name, else the next free variant."""

    def __init__(self, reserved: set[str] | frozenset[str]):
        self.reserved = set(reserved)

    def claim(self, preferred: str) -> str:
        name, n = preferred, 1
        while name in self.reserved or name in C_KEYWORDS:
            n += 1
            name = f"{preferred}{n}" if not preferred[-1].isdigit() else f"{preferred}_{n}"
        self.reserved.add(name)
        return name


def _cargo_crates(root: Path) -> set[str]:
    """Crate names a Rezolus module can refer to by path (its Cargo.toml dependencies)."""
    try:
        text = (root / "Cargo.toml").read_text()
    except OSError:
        return set()
    crates, active = set(), False
    for line in text.splitlines():
        header = re.match(r"^\s*\[(.*)\]\s*$", line)
        if header:
            active = header.group(1).split(".")[-1].endswith("dependencies")
            continue
        m = re.match(r"^\s*([A-Za-z0-9_-]+)\s*(?:\.\s*workspace\s*)?=", line)
        if active and m:
            crates.add(m.group(1).replace("-", "_"))
    return crates


def _imported(path: Path) -> set[str]:
    """Names a Rust file brings into scope with `use` (last segments, braces, `as`)."""
    try:
        text = path.read_text()
    except OSError:
        return set()
    names: set[str] = set()
    for body in re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", text, re.M):
        for part in re.split(r"[{},]", body):
            part = part.strip()
            if not part or part.endswith("::") or part == "*":
                continue
            alias = re.search(r"\bas\s+(\w+)$", part)
            names.add(alias.group(1) if alias else part.split("::")[-1].strip())
    return names


def rust_module_reserved(root: Path | None, group: str) -> dict[str, dict[str, str]]:
    """Names `mod <group>;` (samplers/mod.rs) and `mod <sampler>;` (<group>/linux/mod.rs)
    would clash with: crates and `use` imports in scope there -> where they come from."""
    crates = {c: "a crate (Cargo.toml or the standard library)" for c in RUST_PRELUDE_CRATES}
    if root is None:
        return {"group": dict(crates), "sampler": dict(crates)}
    crates.update({c: "a crate in Rezolus' Cargo.toml" for c in _cargo_crates(root)})
    samplers = root / "src" / "agent" / "samplers"
    groups = dict(crates)
    groups.update({n: "a `use` in src/agent/samplers/mod.rs" for n in _imported(samplers / "mod.rs")})
    members = dict(crates)
    linux = samplers / group / "linux" / "mod.rs"
    members.update({n: f"a `use` in {linux.relative_to(root)}" for n in _imported(linux)})
    return {"group": groups, "sampler": members}


def rust_static_reserved(root: Path | None) -> dict[str, str]:
    """SCREAMING_CASE names a generated `mod.rs` sees through `use crate::agent::*`
    (declared or imported in src/agent/mod.rs, and in the crate root it `use`s):
    a static of the same name would make that name ambiguous."""
    if root is None:
        return {}
    found: dict[str, str] = {}
    for rel in ("src/agent/mod.rs", "src/main.rs", "src/lib.rs"):
        path = Path(root) / rel
        try:
            text = path.read_text()
        except OSError:
            continue
        for name in re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const|static)\s+([A-Z][A-Z0-9_]*)\b", text, re.M):
            found.setdefault(name, rel)
        for name in _imported(path):
            if re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
                found.setdefault(name, f"a `use` in {rel}")
    return found
