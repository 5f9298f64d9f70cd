"""What a Rezolus `vmlinux.h` says about types, read with a real C parser.

`index(rezolus_root, arch)` returns a `TypeIndex`:
- every struct and union with its members' types (anonymous members
  flattened, as C lets an expression reach them), so an expression's member
  chain can be checked: the member exists, `->` only on pointers;
- every typedef, resolved to a `ctype.CType`;
- `tracepoints`: for each `typedef void (*btf_trace_<event>)(void *, ...)`,
  the arguments a tp_btf/raw_tp program receives (spelling and type).
Classic tracepoint records are the structs `trace_event_raw_<event|class>`.

Parsing a 2.7 MiB header with pycparser takes about 9 s, so an index is
built once per header content and kept in the user's cache
(`$XDG_CACHE_HOME/rezolus-sampler/`). The index of the headers in the
Rezolus version this template was written against is bundled
(`vmlinux-index.json.gz`); it also answers when no Rezolus tree is at hand
(Copier renders `copier update` diffs in temporary folders).
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from pycparser import c_ast, c_generator, c_parser

from rezolus_sampler.spec.ctype import BASE_INTEGERS, CType

ARCHES = ("x86_64", "aarch64")
BUNDLED = Path(__file__).with_name("vmlinux-index.json.gz")
FORMAT = 4  # bump when the index layout changes: cached indexes are rebuilt


@dataclass(frozen=True)
class Member:
    name: str
    type: CType
    bits: int | None  # bit-field width, else None
    union: bool = False  # shares its bytes with other members (in a union, maybe anonymous)


def _pack(members: tuple[Member, ...]) -> str:
    return ";".join(
        f"{m.name} {m.type.code} {'-' if m.bits is None else m.bits}{' u' if m.union else ''}"
        for m in members
    )


def _unpack(text: str) -> tuple[Member, ...]:
    out = []
    for item in text.split(";") if text else ():
        parts = item.split(" ")
        bits = None if parts[2] == "-" else int(parts[2])
        out.append(Member(parts[0], CType(parts[1]), bits, len(parts) > 3))
    return tuple(out)


@dataclass(eq=False)
class TypeIndex:
    """One header's types (compared and hashed by identity: one object per header). Records are kept packed (one string each) and
    unpacked on first use: a render touches a handful of the ~10,000."""

    sha256: str
    packed: dict[str, str]  # "s:name" / "u:name" -> members, packed
    typedefs: dict[str, CType]
    tracepoints: dict[str, tuple[tuple[str, CType], ...]]  # event -> ((spelling, type), ...)
    constants: frozenset[str]  # enum constants: ordinary identifiers a generated name must avoid

    def record(self, key: str) -> tuple[Member, ...] | None:
        text = self.packed.get(key)
        return None if text is None else _unpack(text)

    def members(self, record: CType) -> dict[str, Member] | None:
        """Members of a struct/union type; None if it is only declared."""
        found = self.record(record.code)
        return None if found is None else {m.name: m for m in found}

    def raw_record(self, name: str) -> tuple[Member, ...] | None:
        """Fields of `struct trace_event_raw_<name>`, without the common header."""
        found = self.record(f"s:trace_event_raw_{name}")
        if found is None:
            return None
        return tuple(m for m in found if m.name not in ("ent", "__data"))

    @property
    def raw_records(self) -> list[str]:
        prefix = "s:trace_event_raw_"
        return [k[len(prefix) :] for k in self.packed if k.startswith(prefix)]

    # -- (de)serialisation: types as their codes
    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "sha256": self.sha256,
            "records": self.packed,
            "typedefs": {k: v.code for k, v in self.typedefs.items()},
            "tracepoints": {k: [[s, t.code] for s, t in v] for k, v in self.tracepoints.items()},
            "constants": sorted(self.constants),
        }

    @classmethod
    def from_json(cls, data: dict) -> "TypeIndex":
        return cls(
            data["sha256"],
            data["records"],
            {k: CType(v) for k, v in data["typedefs"].items()},
            {k: tuple((s, CType(t)) for s, t in v) for k, v in data["tracepoints"].items()},
            frozenset(data["constants"]),
        )


class IndexError_(ValueError):
    """vmlinux.h could not be read or parsed."""


# --------------------------------------------------------------------------
# building an index with pycparser

_ATTRIBUTE = re.compile(r"__attribute__\(\((?:[^()]|\([^()]*\))*\)\)")


def _preprocess(text: str) -> str:
    """What pycparser needs: no preprocessor lines, no GNU attributes, no builtins."""
    text = re.sub(r"^\s*#.*$", "", text, flags=re.M)
    text = _ATTRIBUTE.sub("", text)
    return text.replace("__builtin_va_list", "void *")


class _Builder:
    def __init__(self, ast: c_ast.FileAST):
        self.records: dict[str, tuple[Member, ...]] = {}
        self.enums: dict[str, str] = {}
        self.typedef_nodes: dict[str, c_ast.Node] = {}
        self.typedefs: dict[str, str] = {}
        self.anonymous = 0
        self.tracepoint_nodes: dict[str, c_ast.FuncDecl] = {}
        self.constants: set[str] = set()
        for node in ast.ext:
            if isinstance(node, c_ast.Typedef):
                self.typedef_nodes[node.name] = node.type
                if node.name.startswith("btf_trace_") and isinstance(node.type, c_ast.PtrDecl):
                    self.tracepoint_nodes[node.name[len("btf_trace_") :]] = node.type.type
        for node in ast.ext:
            if isinstance(node, c_ast.Decl) and isinstance(node.type, (c_ast.Struct, c_ast.Union)):
                self.record(node.type)
            elif isinstance(node, c_ast.Decl) and isinstance(node.type, c_ast.Enum):
                self.enum(node.type)
        for name in self.typedef_nodes:
            self.typedef(name)

    def typedef(self, name: str) -> str:
        if name not in self.typedefs:
            self.typedefs[name] = "?"  # a cycle (never in vmlinux.h) resolves to "unknown"
            self.typedefs[name] = self.code(self.typedef_nodes[name])
        return self.typedefs[name]

    def enum(self, node: c_ast.Enum) -> str:
        if node.values is None:
            return self.enums.get(node.name, "e4+32")
        values = []
        for item in node.values.enumerators:
            self.constants.add(item.name)
            try:
                values.append(int(str(item.value.value).rstrip("uUlL"), 0) if item.value else 0)
            except (AttributeError, ValueError):
                values.append(0)
        negative = any(v < 0 for v in values)
        wide = any(v > 0xFFFFFFFF or v < -(1 << 31) for v in values)
        # clang's range of an enum: the bits its constants need (signed: one more)
        positive_bits = max([v.bit_length() for v in values if v >= 0] or [0])
        negative_bits = max([(-v - 1).bit_length() + 1 for v in values if v < 0] or [0])
        bits = max(positive_bits + 1, negative_bits) if negative else positive_bits
        code = f"e{8 if wide else 4}{'-' if negative else '+'}{max(bits, 1)}"
        if node.name:
            self.enums[node.name] = code
        return code

    def record(self, node: c_ast.Struct | c_ast.Union) -> str:
        prefix = "s" if isinstance(node, c_ast.Struct) else "u"
        if node.decls is None:
            return f"{prefix}:{node.name}"
        if node.name is None:
            self.anonymous += 1
            key = f"{prefix}:@{self.anonymous}"
        else:
            key = f"{prefix}:{node.name}"
        union = prefix == "u"
        members: list[Member] = []
        for decl in node.decls:
            if decl.name is None and isinstance(decl.type, (c_ast.Struct, c_ast.Union)):
                inner = self.record(decl.type)  # anonymous member: its fields are ours
                for m in self.records.get(inner, ()):
                    members.append(Member(m.name, m.type, m.bits, m.union or union))
                continue
            if decl.name is None:
                continue
            bits = int(decl.bitsize.value, 0) if decl.bitsize is not None else None
            members.append(Member(decl.name, CType(self.code(decl.type)), bits, union))
        self.records[key] = tuple(members)
        return key

    def code(self, node: c_ast.Node) -> str:
        if isinstance(node, c_ast.TypeDecl):
            return self.code(node.type)
        if isinstance(node, c_ast.Typename):
            return self.code(node.type)
        if isinstance(node, c_ast.PtrDecl):
            return "*" + self.code(node.type)
        if isinstance(node, c_ast.ArrayDecl):
            dim = node.dim.value if isinstance(node.dim, c_ast.Constant) else "0"
            return f"[{int(str(dim).rstrip('uUlL'), 0)}]" + self.code(node.type)
        if isinstance(node, c_ast.FuncDecl):
            return "f"
        if isinstance(node, (c_ast.Struct, c_ast.Union)):
            return self.record(node)
        if isinstance(node, c_ast.Enum):
            return self.enum(node)
        if isinstance(node, c_ast.IdentifierType):
            names = node.names
            if len(names) == 1 and names[0] in self.typedef_nodes:
                return self.typedef(names[0])
            if names == ["void"]:
                return "v"
            if any(n in ("float", "double") for n in names):
                return "d"
            return BASE_INTEGERS.get(tuple(sorted(names)), "?")
        return "?"

    def tracepoints(self) -> dict[str, tuple[tuple[str, CType], ...]]:
        printer = c_generator.CGenerator()
        out = {}
        for event, func in self.tracepoint_nodes.items():
            params = func.args.params if func.args is not None else []
            args = []
            for param in params[1:]:  # params[0] is the tracepoint's `void *` data
                spelling = printer.visit(param).strip()
                args.append((spelling, CType(self.code(param.type))))
            out[event] = tuple(args)
        return out


def build_index(text: str) -> TypeIndex:
    try:
        ast = c_parser.CParser().parse(_preprocess(text), "vmlinux.h")
    except Exception as err:  # pycparser raises ParseError and plain errors alike
        raise IndexError_(f"cannot parse vmlinux.h: {err}") from None
    builder = _Builder(ast)
    return TypeIndex(
        hashlib.sha256(text.encode()).hexdigest(),
        {k: _pack(v) for k, v in builder.records.items()},
        {k: CType(v) for k, v in builder.typedefs.items()},
        builder.tracepoints(),
        frozenset(builder.constants),
    )


# --------------------------------------------------------------------------
# finding an index: memory, bundled, user cache, or parse


def header_path(rezolus_root: Path, arch: str) -> Path:
    return Path(rezolus_root) / "src" / "agent" / "bpf" / arch / "vmlinux.h"


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rezolus-sampler"


@functools.lru_cache(maxsize=1)
def _bundled() -> dict[str, dict]:
    """sha256 -> index JSON of the headers bundled with the template."""
    try:
        data = json.loads(gzip.decompress(BUNDLED.read_bytes()))
    except OSError:
        return {}
    return {entry["sha256"]: entry for entry in data["indexes"] if entry["format"] == FORMAT}


@functools.lru_cache(maxsize=2)
def bundled_default(arch: str) -> TypeIndex:
    """The bundled index of `arch` (used when no Rezolus tree is at hand)."""
    data = json.loads(gzip.decompress(BUNDLED.read_bytes()))
    return _from_json(data["default"][arch])


@functools.lru_cache(maxsize=8)
def _from_json(sha: str) -> TypeIndex:
    return TypeIndex.from_json(_bundled()[sha])


@functools.lru_cache(maxsize=8)
def _by_content(sha: str, path: str) -> TypeIndex:
    if sha in _bundled():
        return _from_json(sha)
    cached = _cache_dir() / f"vmlinux-{sha[:32]}-v{FORMAT}.json.gz"
    try:
        return TypeIndex.from_json(json.loads(gzip.decompress(cached.read_bytes())))
    except (OSError, ValueError, KeyError):
        pass
    print(f"indexing {path} (once per header; about 10 s)", file=sys.stderr)
    found = build_index(Path(path).read_text(errors="replace"))
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(gzip.compress(json.dumps(found.to_json()).encode(), 6))
        os.replace(tmp, cached)
    except OSError:
        pass  # an unwritable cache only costs the parse next time
    return found


@functools.lru_cache(maxsize=8)
def _sha_of(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def index(rezolus_root: Path | None, arch: str = "x86_64") -> TypeIndex:
    """The type index of the target tree's vmlinux.h, else the bundled one."""
    if rezolus_root is not None:
        path = header_path(rezolus_root, arch)
        try:
            st = path.stat()
        except OSError:
            st = None
        if st is not None:
            return _by_content(_sha_of(str(path), st.st_mtime_ns, st.st_size), str(path))
    return bundled_default(arch)


LIBBPF_HEADERS = ("bpf_helpers.h", "bpf_helper_defs.h", "bpf_core_read.h", "bpf_tracing.h")
_DEFINED = (
    re.compile(r"^\s*#\s*define\s+(\w+)", re.M),  # macros
    re.compile(r"\(\s*\*\s*(?:const\s+)?(\w+)\s*\)\s*\("),  # helpers: (*bpf_map_lookup_elem)(...)
    re.compile(r"^static\s+[^;=()]*?\b(\w+)\s*\(", re.M),  # inline functions
)


def libbpf_names(include: Path = Path("/usr/include/bpf")) -> list[str]:
    """Every name the libbpf headers a sampler includes define (macros, helpers)."""
    names: set[str] = set()
    for header in LIBBPF_HEADERS:
        text = (include / header).read_text(errors="replace")
        for pattern in _DEFINED:
            names.update(pattern.findall(text))
    return sorted(names)


@functools.lru_cache(maxsize=1)
def libbpf_identifiers() -> frozenset[str]:
    """Names from libbpf's headers, recorded when the bundle was built."""
    try:
        return frozenset(json.loads(gzip.decompress(BUNDLED.read_bytes()))["libbpf"])
    except (OSError, KeyError, ValueError):
        return frozenset()


@functools.lru_cache(maxsize=1)
def bundled_event_classes() -> dict[str, str]:
    """'category:event' -> class record of events without their own struct.

    Recorded from a kernel's tracefs when the bundle was built, so renders
    agree on every machine, tracefs or not.
    """
    try:
        return json.loads(gzip.decompress(BUNDLED.read_bytes())).get("event_classes", {})
    except (OSError, ValueError):
        return {}


@functools.lru_cache(maxsize=1)
def bundled_categories() -> dict[str, str]:
    """event -> category of every tracepoint a kernel's tracefs had when the
    bundle was built (vmlinux.h names events, not their categories)."""
    try:
        return json.loads(gzip.decompress(BUNDLED.read_bytes())).get("categories", {})
    except (OSError, ValueError):
        return {}


def categories_from_tracefs() -> dict[str, str]:
    from rezolus_sampler.spec.hooks import TRACEFS_EVENTS

    return {
        fmt.parent.name: fmt.parent.parent.name
        for fmt in sorted(TRACEFS_EVENTS.glob("*/*/format"))
    }


def event_classes_from_tracefs(found: TypeIndex) -> dict[str, str]:
    from rezolus_sampler.spec.hooks import TRACEFS_EVENTS, class_from_fields, tracefs_fields

    classes = {}
    for fmt in sorted(TRACEFS_EVENTS.glob("*/*/format")):
        category, event = fmt.parent.parent.name, fmt.parent.name
        if found.raw_record(event) is not None or event not in found.tracepoints:
            continue
        fields = tracefs_fields(category, event) or []
        struct = class_from_fields(event, [f.name for f in fields], found)
        if struct:
            classes[f"{category}:{event}"] = struct
    return classes


def write_bundled(rezolus_root: Path) -> Path:
    """Rebuild the bundled index from a Rezolus checkout's headers (and libbpf's)."""
    entries, default, classes = [], {}, {}
    for arch in ARCHES:
        found = build_index(header_path(rezolus_root, arch).read_text(errors="replace"))
        entries.append(found.to_json())
        default[arch] = found.sha256
        if arch == "x86_64":
            classes = event_classes_from_tracefs(found)
    blob = json.dumps(
        {
            "indexes": entries,
            "default": default,
            "libbpf": libbpf_names(),
            "event_classes": classes,
            "categories": categories_from_tracefs(),
        },
        separators=(",", ":"),
    )
    BUNDLED.write_bytes(gzip.compress(blob.encode(), 9, mtime=0))
    return BUNDLED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rezolus", type=Path, required=True, help="a Rezolus checkout")
    parser.add_argument(
        "--write-bundled", action="store_true", help=f"rewrite {BUNDLED.name} from its headers"
    )
    args = parser.parse_args(argv)
    if args.write_bundled:
        print(f"wrote {write_bundled(args.rezolus)}")
        _bundled.cache_clear()
    for arch in ARCHES:
        found = index(args.rezolus, arch)
        print(
            f"{arch}: {len(found.tracepoints)} btf_trace typedefs, {len(found.packed)} records, "
            f"{len(found.raw_records)} trace_event_raw records, {len(found.typedefs)} typedefs"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
