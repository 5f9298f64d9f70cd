"""Tracepoint signatures read from a Rezolus `vmlinux.h`.

Two kinds of definitions matter to a sampler:
- `typedef void (*btf_trace_<event>)(void *, <args>...);` gives the typed
  arguments a `tp_btf` or `raw_tp` program receives (types only, no names);
- `struct trace_event_raw_<event-or-class> { ... };` gives the record a classic
  `tracepoint/` program receives as its context.

Parsing a 3 MiB header takes a fraction of a second, so results are cached per
file. When no Rezolus tree is at hand (Copier renders `copier update` diffs in
temporary folders), the bundled index `tracepoints.json`, generated from the
same headers by `python -m rezolus_sampler.spec.vmlinux --write-index`, answers instead.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

ARCHES = ("x86_64", "aarch64")
INDEX_PATH = Path(__file__).with_name("tracepoints.json")
# Read at import: Copier may import this module from a temporary clone of the
# template that it deletes before the index is first needed.
_INDEX = json.loads(INDEX_PATH.read_text()) if INDEX_PATH.is_file() else {}

_TYPEDEF = re.compile(r"^typedef void \(\*btf_trace_(\w+)\)\((.*)\);$", re.M)
_RAW_STRUCT = re.compile(r"^struct trace_event_raw_(\w+) \{\n(.*?)^\};$", re.M | re.S)
_FIELD = re.compile(r"^\t(.+?)\s*;$", re.M)


@dataclass(frozen=True)
class Signatures:
    """Everything one vmlinux.h says about tracepoints."""

    btf_args: dict[str, tuple[str, ...]]  # event -> argument C types, context pointer dropped
    raw_structs: dict[str, tuple[tuple[str, str], ...]]  # struct suffix -> ((type, field), ...)


def split_args(arglist: str) -> list[str]:
    """Split a C parameter list at top-level commas."""
    parts, depth, current = [], 0, []
    for ch in arglist:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def _field(decl: str) -> tuple[str, str] | None:
    """`long unsigned int args[6]` -> ("long unsigned int [6]", "args")."""
    m = re.match(r"^(.*?)([A-Za-z_]\w*)(\[\d*\])?(\s*:\s*\d+)?$", decl)
    if not m or "(" in decl:
        return None
    ctype = (m.group(1).strip() + (" " + m.group(3) if m.group(3) else "")).strip()
    return ctype, m.group(2)


def parse(text: str) -> Signatures:
    btf_args = {}
    for event, arglist in _TYPEDEF.findall(text):
        args = split_args(arglist)
        btf_args[event] = tuple(args[1:])  # args[0] is the tracepoint's void * data
    raw_structs = {}
    for name, body in _RAW_STRUCT.findall(text):
        fields = []
        for decl in _FIELD.findall(body):
            parsed = _field(decl)
            if parsed and parsed[1] not in ("ent", "__data"):
                fields.append(parsed)
        raw_structs[name] = tuple(fields)
    return Signatures(btf_args, raw_structs)


@functools.lru_cache(maxsize=8)
def _parse_file(path: str, mtime: float) -> Signatures:
    return parse(Path(path).read_text(errors="replace"))


def header_path(rezolus_root: Path, arch: str) -> Path:
    return Path(rezolus_root) / "src" / "agent" / "bpf" / arch / "vmlinux.h"


@functools.lru_cache(maxsize=1)
def _bundled() -> dict[str, Signatures]:
    data = _INDEX
    return {
        arch: Signatures(
            {k: tuple(v) for k, v in data[arch]["btf_args"].items()},
            {k: tuple(tuple(f) for f in v) for k, v in data[arch]["raw_structs"].items()},
        )
        for arch in ARCHES
    }


def signatures(rezolus_root: Path | None, arch: str = "x86_64") -> Signatures:
    """Signatures from the target tree's vmlinux.h, else the bundled index."""
    if rezolus_root is not None:
        path = header_path(rezolus_root, arch)
        if path.is_file():
            return _parse_file(str(path), path.stat().st_mtime)
    return _bundled()[arch]


@functools.lru_cache(maxsize=1)
def event_classes() -> dict[str, str]:
    """'category:event' -> class struct suffix, for events without their own struct.

    Recorded by `--write-index` from a kernel's tracefs (see `classes_from_tracefs`)
    so renders agree on every machine, tracefs or not.
    """
    return _INDEX.get("event_classes", {})


def classes_from_tracefs(sigs: Signatures, tracefs: Path) -> dict[str, str]:
    from rezolus_sampler.spec.model import class_from_tracefs  # the one matching rule

    found = {}
    for fmt in sorted(tracefs.glob("events/*/*/format")):
        category, event = fmt.parent.parent.name, fmt.parent.name
        if event in sigs.raw_structs or event not in sigs.btf_args:
            continue
        struct = class_from_tracefs(category, event, sigs.raw_structs)
        if struct:
            found[f"{category}:{event}"] = struct
    return found


def write_index(rezolus_root: Path, out: Path = INDEX_PATH) -> None:
    data: dict = {}
    for arch in ARCHES:
        sigs = parse(header_path(rezolus_root, arch).read_text(errors="replace"))
        data[arch] = {"btf_args": sigs.btf_args, "raw_structs": sigs.raw_structs}
    tracefs = Path("/sys/kernel/tracing")
    x86 = parse(header_path(rezolus_root, "x86_64").read_text(errors="replace"))
    data["event_classes"] = classes_from_tracefs(x86, tracefs)
    out.write_text(json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rezolus", type=Path, required=True, help="a Rezolus checkout")
    parser.add_argument("--write-index", action="store_true", help=f"rewrite {INDEX_PATH.name}")
    args = parser.parse_args(argv)
    if args.write_index:
        write_index(args.rezolus)
        print(f"wrote {INDEX_PATH}")
    for arch in ARCHES:
        sigs = signatures(args.rezolus, arch)
        print(f"{arch}: {len(sigs.btf_args)} btf_trace typedefs, "
              f"{len(sigs.raw_structs)} trace_event_raw structs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
