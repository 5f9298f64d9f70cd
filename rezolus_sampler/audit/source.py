"""Read a sampler's C and Rust the way Rezolus' build and readers do.

Nothing here compiles anything: the BPF C is read with its `#define`s and the
shared headers it includes (for constants and helper bodies), `mod.rs` for the
builder calls that decide what userspace mmaps and which programs load, and
`stats.rs` for the `#[metric]` statics and acquisition groups. `build.rs`'
description scan is reproduced literally (`build_rs_descriptions`), because
what matters is what *it* extracts, not what the Rust compiler would.

Every fact keeps its line, so a finding can point at the code, and every
comment is kept, so a waiver can be found next to it.
"""

from __future__ import annotations

import ast
import bisect
import dataclasses
import os
import re
from functools import cached_property
from pathlib import Path

from rezolus_sampler.paths import SAMPLERS, sampler_dir  # noqa: F401 (re-exported)

SHARED_BPF = Path("src") / "agent" / "bpf"
SOURCES_RE = re.compile(r"\bconst\s+SOURCES\s*:[^=]*=\s*&\s*\[(.*?)\];", re.S)
PAIR_RE = re.compile(r'\(\s*"(\w+)"\s*,\s*"(\w+)"\s*\)')


class SourceError(Exception):
    """A file cannot be read as a sampler source (usage error for the command)."""


# --------------------------------------------------------------------------
# lexing shared by C and Rust
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Comment:
    line: int  # 1-based line where the comment text sits
    text: str  # without the // or /* */ markers


_CHAR_LITERAL = re.compile(r"'(?:\\.|[^\\'\n])'")
_TOKEN = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:[^"\\]|\\.)*"|' + _CHAR_LITERAL.pattern, re.S)


def lex(text: str) -> tuple[str, list[Comment]]:
    """The text with every comment blanked (newlines kept, so offsets and lines
    hold) and the comments one per line. String and char literals stay; a lone
    `'` (a Rust lifetime) is plain code."""
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    pieces, comments, last = [], [], 0
    for m in _TOKEN.finditer(text):
        token = m.group(0)
        if not token.startswith("/"):
            continue  # a string or char literal: kept as code
        line = bisect.bisect_right(starts, m.start())
        if token.startswith("//"):
            body = token[2:]
            comments.append(Comment(line, body[1:] if body.startswith(("/", "!")) else body))
        else:
            for k, part in enumerate(token[2:-2].split("\n")):
                comments.append(Comment(line + k, part.strip().lstrip("*").strip()))
        pieces.append(text[last : m.start()])
        pieces.append(re.sub(r"[^\n]", " ", token))
        last = m.end()
    pieces.append(text[last:])
    return "".join(pieces), comments


def match_close(code: str, open_idx: int) -> int:
    """Index of the bracket closing the one at `open_idx` (string literals skipped).
    `code` is comment-free text from `lex`. Returns len(code) when unbalanced."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = [pairs[code[open_idx]]]
    i, n = open_idx + 1, len(code)
    while i < n:
        c = code[i]
        if c == '"':
            i += 1
            while i < n and code[i] != '"':
                i += 2 if code[i] == "\\" else 1
        elif c == "'" and (m := _CHAR_LITERAL.match(code, i)):
            i = m.end() - 1
        elif c in pairs:
            stack.append(pairs[c])
        elif c in ")]}":
            if stack and c == stack[-1]:
                stack.pop()
                if not stack:
                    return i
        i += 1
    return n


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split `text` at `sep` outside brackets and string literals."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        c = text[i]
        if c == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
        i += 1
    tail = text[start:].strip()
    return parts + [tail] if tail else parts


class Text:
    """A source file: raw text, comment-free code, comments, and line lookup."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.text = text
        self.code, self.comments = lex(text)
        self._starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line(self, offset: int) -> int:
        return bisect.bisect_right(self._starts, offset)

    def lines(self) -> list[str]:
        return self.text.splitlines()

    @cached_property
    def comments_by_line(self) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        for comment in self.comments:
            found.setdefault(comment.line, []).append(comment.text)
        return found


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror or e}") from e


# --------------------------------------------------------------------------
# integer constant expressions (C #defines, Rust consts)
# --------------------------------------------------------------------------

_INT_SUFFIX = re.compile(r"\b(0[xX][0-9a-fA-F]+|\d+)(?:[uU]?[lL]{0,2}|[lL]{1,2}[uU]?)\b")
_ALLOWED = re.compile(r"^[\d\sxXa-fA-F+\-*/%()<>&|^~]*$")


def eval_int(expr: str, names: dict[str, str], depth: int = 0) -> int | None:
    """Value of an integer constant expression, names expanded from `names`
    (macro or const name -> expression); None when it is not one."""
    if depth > 12:
        return None
    expr = expr.strip()
    if not expr:
        return None

    def expand(m: re.Match) -> str:
        name = m.group(0)
        if name in names:
            value = eval_int(names[name], names, depth + 1)
            if value is not None:
                return str(value)
        return name

    expanded = re.sub(r"\b[A-Za-z_]\w*\b", expand, expr)
    expanded = _INT_SUFFIX.sub(lambda m: m.group(1), expanded).replace("_", "")
    if not _ALLOWED.match(expanded) or re.search(
        r"\b[A-Za-z_]\w*\b", re.sub(r"0[xX][0-9a-fA-F]+", "0", expanded)
    ):
        return None
    try:
        tree = ast.parse(expanded.replace("/", "//"), mode="eval")
    except SyntaxError:
        return None
    ok = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.operator, ast.unaryop)
    if not all(isinstance(node, ok) for node in ast.walk(tree)):
        return None
    try:
        value = eval(
            compile(tree, "<expr>", "eval"), {"__builtins__": {}}
        )  # noqa: S307 (checked AST)
    except (ArithmeticError, ValueError):
        return None
    return value if isinstance(value, int) else None


# --------------------------------------------------------------------------
# BPF C
# --------------------------------------------------------------------------

_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(\w+)(\(?)[ \t]*(.*)$", re.M)
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"', re.M)
_SEC = re.compile(r'\bSEC\(\s*"([^"]*)"\s*\)')
_PROG_MACROS = {
    "BPF_PROG",
    "BPF_PROG2",
    "BPF_KPROBE",
    "BPF_KRETPROBE",
    "BPF_KSYSCALL",
    "BPF_UPROBE",
}
_MAP_FIELD = re.compile(r"__(uint|type|array)\(\s*(\w+)\s*,\s*(.*?)\s*\)\s*;", re.S)


@dataclasses.dataclass
class CMap:
    name: str
    line: int  # `struct {`
    end_line: int  # `} name SEC(".maps");`
    type: str  # BPF_MAP_TYPE_...
    type_line: int
    flags: str
    max_entries: str
    max_entries_line: int
    key: str
    value: str
    value_line: int


@dataclasses.dataclass
class CFunc:
    name: str
    file: Path
    line: int  # first line of the definition (its SEC line for a program)
    end_line: int
    header: str
    body: str  # comment-free text between the braces
    body_offset: int  # offset of the body in the file's code
    section: str | None  # SEC("...") of a program

    @property
    def inline(self) -> bool:
        return "__always_inline" in self.header or "inline" in self.header.split()


def hook_of(section: str) -> tuple[str, str]:
    """(kind of attach point, event or symbol) for a program section: every
    tracepoint flavour of one event is one hook, as is every entry probe of one
    function."""
    parts = section.split("/")
    kind = parts[0]
    if kind in ("tp_btf", "raw_tp", "raw_tracepoint", "tracepoint", "tp"):
        return ("tracepoint", parts[-1])
    if kind in ("kprobe", "fentry", "ksyscall") and len(parts) > 1:
        return ("entry", parts[1])
    if kind in ("kretprobe", "fexit") and len(parts) > 1:
        return ("exit", parts[1])
    return (kind, section)


class CSource(Text):
    """A BPF C file with the shared headers it includes."""

    def __init__(self, path: Path, text: str, include_dir: Path | None, _seen: set | None = None):
        super().__init__(path, text)
        seen = _seen if _seen is not None else set()
        self.defines: dict[str, str] = {}
        self.define_lines: dict[str, int] = {}
        self.headers: list[CSource] = []
        for m in _INCLUDE.finditer(self.code):
            header = self._resolve(m.group(1), include_dir)
            if header is not None and header not in seen and header.name != "vmlinux.h":
                seen.add(header)  # vmlinux.h: kernel types only, and 100k+ lines
                self.headers.append(_header(header, include_dir))
        for header in self.headers:
            self.defines.update(header.defines)
        for m in _DEFINE.finditer(self.code):
            if not m.group(2):  # object-like macros only
                self.defines[m.group(1)] = m.group(3).strip()
                self.define_lines[m.group(1)] = self.line(m.start())
        self.maps: dict[str, CMap] = {}
        self.funcs: dict[str, CFunc] = {}
        self.structs: dict[str, str] = {}
        self._scan_top_level()

    def _resolve(self, name: str, include_dir: Path | None) -> Path | None:
        # Rezolus' "../../../agent/bpf/x.h" resolves through the -I arch directory
        candidates = [self.path.parent / name]
        if include_dir is not None:
            candidates.insert(0, include_dir / name)
        for candidate in candidates:
            resolved = Path(os.path.normpath(candidate))
            if resolved.is_file():
                return resolved
        return None

    def eval(self, expr: str) -> int | None:
        return eval_int(expr, self.defines)

    def _scan_top_level(self) -> None:
        code, i, n, last = self.code, 0, len(self.code), 0
        while i < n:
            c = code[i]
            if c == '"':
                i += 1
                while i < n and code[i] != '"':
                    i += 2 if code[i] == "\\" else 1
            elif c == ";":
                last = i + 1
            elif c == "{":
                close = match_close(code, i)
                header = "\n".join(
                    ln for ln in code[last:i].splitlines() if not ln.strip().startswith("#")
                ).strip()
                end = code.find(";", close)
                declarator = code[close + 1 : end if end >= 0 else n]
                if re.search(r"\bstruct(\s+\w+)?\s*$", header):
                    if _SEC.search(declarator):
                        self._add_map(code[i + 1 : close], declarator, i, end)
                    elif m := re.search(r"\bstruct\s+(\w+)\s*$", header):
                        self.structs[m.group(1)] = code[i + 1 : close]
                    i, last = (end, end + 1) if end >= 0 else (n, n)
                    continue
                if header.endswith(")"):
                    self._add_func(header, last, i, close)
                    i = last = close + 1
                    continue
                i, last = (end, end + 1) if end >= 0 else (n, n)  # initializer or enum
                continue
            elif c == "}":
                last = i + 1
            i += 1

    def _add_map(self, body: str, declarator: str, open_idx: int, end: int) -> None:
        name = re.match(r"\s*(\w+)", declarator)
        if not name:
            return
        fields = {}
        for m in _MAP_FIELD.finditer(body):
            fields[m.group(2)] = (m.group(3), self.line(open_idx + 1 + m.start()))

        def get(key: str) -> tuple[str, int]:
            return fields.get(key, ("", self.line(open_idx)))

        self.maps[name.group(1)] = CMap(
            name=name.group(1),
            line=self.line(open_idx),
            end_line=self.line(end if end >= 0 else open_idx),
            type=get("type")[0],
            type_line=get("type")[1],
            flags=get("map_flags")[0],
            max_entries=get("max_entries")[0],
            max_entries_line=get("max_entries")[1],
            key=get("key")[0],
            value=get("value")[0],
            value_line=get("value")[1],
        )

    def _add_func(self, header: str, header_start: int, open_idx: int, close: int) -> None:
        section = _SEC.search(header)
        flat = re.sub(r"\s+", " ", header)
        # the last parenthesised group is the parameter list; its callee is the name
        depth, j = 0, len(flat) - 1
        while j >= 0:
            if flat[j] == ")":
                depth += 1
            elif flat[j] == "(":
                depth -= 1
                if depth == 0:
                    break
            j -= 1
        m = re.search(r"(\w+)\s*$", flat[:j])
        if not m:
            return
        name = m.group(1)
        if name in _PROG_MACROS:
            inner = re.match(r"\(\s*(\w+)", flat[j:])
            if not inner:
                return
            name = inner.group(1)
        start = (
            header_start
            + len(self.code[header_start:open_idx])
            - len(self.code[header_start:open_idx].lstrip())
        )
        self.funcs[name] = CFunc(
            name=name,
            file=self.path,
            line=self.line(start),
            end_line=self.line(close),
            header=header,
            body=self.code[open_idx + 1 : close],
            body_offset=open_idx + 1,
            section=section.group(1) if section else None,
        )

    # -- derived facts -------------------------------------------------------

    @property
    def programs(self) -> list[CFunc]:
        return [f for f in self.funcs.values() if f.section and not f.section.startswith(".")]

    def _with_headers(self, attr: str) -> dict:
        """`attr` (a name -> definition dict) of this file and of every header it
        includes, recursively (this file wins)."""
        found: dict = {}
        for header in self.headers:
            found.update(header._with_headers(attr))
        found.update(getattr(self, attr))
        return found

    def all_funcs(self) -> dict[str, CFunc]:
        return self._with_headers("funcs")

    def all_structs(self) -> dict[str, str]:
        return self._with_headers("structs")

    def value_u64s(self, cmap: CMap) -> int | None:
        """u64 values in one map entry: 1 for `u64`, W for `struct { u64 slot[W]; }`."""
        value = cmap.value.strip()
        if re.fullmatch(r"(__)?u64|unsigned long long|long long unsigned( int)?", value):
            return 1
        m = re.fullmatch(r"struct\s+(\w+)", value)
        body = self.all_structs().get(m.group(1)) if m else None
        if body is None:
            return None
        total = 0
        for decl in filter(None, (d.strip() for d in body.split(";"))):
            f = re.fullmatch(r"(?:__)?u64\s+\w+\s*(?:\[(.+)\])?", decl)
            if not f:
                return None
            count = self.eval(f.group(1)) if f.group(1) else 1
            if count is None:
                return None
            total += count
        return total

    def reachable(self, func: CFunc) -> list[CFunc]:
        """`func` and every function it calls, transitively (this file and headers)."""
        funcs = self.all_funcs()
        seen, todo, order = {func.name}, [func], []
        while todo:
            f = todo.pop()
            order.append(f)
            for callee in re.findall(r"\b(\w+)\s*\(", f.body):
                if callee in funcs and callee not in seen:
                    seen.add(callee)
                    todo.append(funcs[callee])
        return order


_HEADERS: dict[tuple[Path, Path | None, float], CSource] = {}


def _header(path: Path, include_dir: Path | None) -> CSource:
    """A shared header, parsed once per process (every sampler includes the same few)."""
    key = (path, include_dir, path.stat().st_mtime)
    if key not in _HEADERS:
        _HEADERS[key] = CSource(path, read_text(path), include_dir, {path})
    return _HEADERS[key]


# --------------------------------------------------------------------------
# Rust: mod.rs and stats.rs
# --------------------------------------------------------------------------

_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
REGISTERING = (
    "counters",
    "cpu_counters",
    "packed_counters",
    "sparse_packed_counters",
    "histogram",
    "map",
)
_BUILDER_CALL = re.compile(
    r"\.(counters|cpu_counters|packed_counters|sparse_packed_counters|histogram|map|perf_event|"
    r"ringbuf_handler)\s*\("
)
_VEC = re.compile(r"\blet\s+(?:mut\s+)?(\w+)\s*(?::[^=]+)?=\s*vec!\s*\[")


def rust_unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), value)


def statics_in(text: str, base: Text, offset: int) -> list[tuple[str, int]]:
    """`&NAME` references in `text` (a slice of `base.code` at `offset`), with lines."""
    return [
        (m.group(1).split("::")[-1], base.line(offset + m.start()))
        for m in re.finditer(r"&\s*((?:\w+::)*\w+)", text)
    ]


@dataclasses.dataclass
class Registration:
    kind: str  # builder method
    map: str  # BPF map name
    statics: list[tuple[str, int]]  # registered statics with the line naming each
    group: str | None  # AcquisitionGroup static
    line: int
    vector: str | None = None  # `let <vector> = vec![..]` for counters/cpu_counters
    handler: str | None = None  # ringbuf handler function


@dataclasses.dataclass
class RustFn:
    name: str
    line: int
    end_line: int
    body: str
    body_offset: int
    impl: str  # header of the enclosing impl block ("" at module level)


class ModRs(Text):
    """A sampler's mod.rs: NAME, module doc, builder registrations, program selection."""

    def __init__(self, path: Path, text: str):
        super().__init__(path, text)
        code = self.code
        m = re.search(r'\bconst\s+NAME\s*:\s*&(?:\'static\s+)?str\s*=\s*"(\w+)"', code)
        self.name = m.group(1) if m else None
        self.doc = [
            (number, line.strip()[3:])
            for number, line in enumerate(self.lines(), 1)
            if line.strip().startswith("//!")
        ]
        self.vectors: dict[str, tuple[list[tuple[str, int]], int]] = {}
        for m in _VEC.finditer(code):
            close = match_close(code, m.end() - 1)
            self.vectors[m.group(1)] = (
                statics_in(code[m.end() : close], self, m.end()),
                self.line(m.start()),
            )
        self.registrations: list[Registration] = []
        for m in _BUILDER_CALL.finditer(code):
            close = match_close(code, m.end() - 1)
            args = split_top(code[m.end() : close])
            first = _STRING.fullmatch(args[0]) if args else None
            if not first:
                continue  # e.g. an iterator's .map(|x| ..)
            self.registrations.append(self._registration(m.group(1), first.group(1), args, m))
        self.twins, self.twins_line = self._twins()
        self.enabled = self._enabled()
        self.named_programs = self._named_programs()
        self.fns = self._fns()

    def _registration(self, kind: str, map_name: str, args: list[str], m: re.Match) -> Registration:
        line = self.line(m.start())
        group = None
        if kind not in ("map", "ringbuf_handler") and len(args) >= 3:
            refs = re.findall(r"&\s*((?:\w+::)*\w+)", args[-1])
            group = refs[-1].split("::")[-1] if refs else None
        reg = Registration(kind, map_name, [], group, line)
        if kind in ("counters", "cpu_counters") and len(args) >= 2:
            vec = args[1]
            if vec.startswith("vec!"):
                start = self.code.find(vec, m.end())
                reg.statics = statics_in(vec, self, start)
            elif vec in self.vectors:
                reg.vector = vec
                reg.statics = self.vectors[vec][0]
        elif kind in ("packed_counters", "sparse_packed_counters", "histogram") and len(args) >= 2:
            reg.statics = [(s, line) for s, _ in statics_in(args[1], self, 0)]
        elif kind == "perf_event" and len(args) >= 3:
            reg.statics = [(s, line) for s, _ in statics_in(args[2], self, 0)]
        elif kind == "ringbuf_handler" and len(args) >= 2:
            reg.handler = args[1].split("::")[-1]
        return reg

    def _twins(self) -> tuple[tuple[list[str], list[str]] | None, int]:
        m = re.search(r"\.disabled_programs\s*\(", self.code)
        if not m:
            return None, 0
        body = self.code[m.end() : match_close(self.code, m.end() - 1)]
        arrays = [re.findall(r'"(\w+)"', a) for a in re.findall(r"&\s*\[(.*?)\]", body, re.S)]
        line = self.line(m.start())
        if re.match(r"\s*if\s+kernel_has_btf\(\)", body) and len(arrays) == 2:
            return (arrays[0], arrays[1]), line
        names = [n for a in arrays for n in a]
        return (names, names), line

    def _enabled(self) -> dict[str | None, list[str]]:
        """enabled_programs allowlist per target arch (None: every arch); {} = all load."""
        m = re.search(r"\.enabled_programs\s*\(", self.code)
        if not m:
            return {}
        arg = self.code[m.end() : match_close(self.code, m.end() - 1)].strip()
        if arg.startswith("&"):
            return {None: re.findall(r'"(\w+)"', arg)}
        found: dict[str | None, list[str]] = {}
        pattern = (
            r'(?:#\[cfg\(\s*target_arch\s*=\s*"(\w+)"\s*\)\]\s*)?let\s+'
            + re.escape(arg)
            + r"\s*(?::[^=]+)?=\s*&\s*\[(.*?)\]"
        )
        for cfg in re.finditer(pattern, self.code, re.S):
            found[cfg.group(1)] = re.findall(r'"(\w+)"', cfg.group(2))
        return found

    def _named_programs(self) -> list[tuple[str, int, str]]:
        """Program names written in disabled/enabled/required/driver lists, with lines."""
        names = []
        for m in re.finditer(
            r"\.(disabled_programs|enabled_programs|required_programs|driver_programs)\s*\(",
            self.code,
        ):
            close = match_close(self.code, m.end() - 1)
            body = self.code[m.end() : close]
            if m.group(1) in ("required_programs", "driver_programs"):
                found = re.finditer(r'\(\s*"(\w+)"', body)
            else:
                found = re.finditer(r'"(\w+)"', body)
            for s in found:
                names.append((s.group(1), self.line(m.end() + s.start()), m.group(1)))
        for arch_list in re.finditer(
            r"let\s+enabled_programs\s*(?::[^=]+)?=\s*&\s*\[(.*?)\]", self.code, re.S
        ):
            for s in re.finditer(r'"(\w+)"', arch_list.group(1)):
                names.append(
                    (s.group(1), self.line(arch_list.start(1) + s.start()), "enabled_programs")
                )
        return names

    def _fns(self) -> dict[str, RustFn]:
        found: dict[str, RustFn] = {}
        impls = []
        for m in re.finditer(r"^\s*impl\b[^{;]*\{", self.code, re.M):
            impls.append((m.end() - 1, match_close(self.code, m.end() - 1), m.group(0).strip()))
        for m in re.finditer(r"\bfn\s+(\w+)\s*(?:<[^>]*>)?\s*\(", self.code):
            params_close = match_close(self.code, m.end() - 1)
            brace = self.code.find("{", params_close)
            semicolon = self.code.find(";", params_close)
            if brace < 0 or 0 <= semicolon < brace:
                continue
            close = match_close(self.code, brace)
            impl = next((h for a, b, h in impls if a < m.start() < b), "")
            key = m.group(1) if not impl else f"{impl}::{m.group(1)}"
            found[key] = RustFn(
                m.group(1),
                self.line(m.start()),
                self.line(close),
                self.code[brace + 1 : close],
                brace + 1,
                impl,
            )
        return found


@dataclasses.dataclass
class Metric:
    static: str
    type: str
    ctor: str
    name: str | None
    description: str | None
    metadata: dict[str, str]
    line: int  # `#[metric(`
    end_line: int  # the `pub static` line
    offset: int  # of `#[metric(` in the raw text


@dataclasses.dataclass
class Group:
    static: str
    sampler: str | None  # first argument, through bpf_sampler_name("...")
    name: str | None
    reader_stamped: bool
    line: int
    registered: int | None = None  # line of its ACQUISITION_GROUPS registration


_GROUP = re.compile(
    r"\bstatic\s+(\w+)\s*:\s*(?:\w+::)*AcquisitionGroup\s*=\s*(?:\w+::)*AcquisitionGroup::"
    r"(new|new_reader_stamped)\s*\("
)
_GROUP_REG = re.compile(
    r"#\[distributed_slice\(\s*(?:\w+::)*ACQUISITION_GROUPS\s*\)\]\s*(?:pub\s+)?static\s+\w+\s*:"
    r"[^=]*=\s*&\s*(\w+)\s*;"
)
_STATIC_AFTER_ATTR = re.compile(
    r"\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?static\s+(\w+)\s*:\s*([^=]+?)\s*=\s*([^;]+);",
    re.S,
)
_RUST_CONST = re.compile(
    r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:static|const)\s+(\w+)\s*:\s*\w+\s*=\s*([^;]+);", re.M
)


class StatsRs(Text):
    """A sampler's stats.rs: `#[metric]` statics, acquisition groups, constants."""

    def __init__(self, path: Path, text: str):
        super().__init__(path, text)
        code = self.code
        self.metrics: dict[str, Metric] = {}
        self.orphan_attributes: list[int] = []  # `#[metric(` not followed by a static
        for m in re.finditer(r"#\[metric\(", code):
            close = match_close(code, m.end() - 1)
            args = code[m.end() : close]
            after = (
                _STATIC_AFTER_ATTR.match(code, close + 2) if code.startswith(")]", close) else None
            )
            if not after:
                self.orphan_attributes.append(self.line(m.start()))
                continue
            fields = {
                k: rust_unescape(v)
                for k, v in re.findall(
                    r'\b(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"',
                    re.sub(r"metadata\s*=\s*\{.*?\}", "", args, flags=re.S),
                )
            }
            meta = re.search(r"metadata\s*=\s*\{(.*?)\}", args, re.S)
            metadata = {
                k: rust_unescape(v)
                for k, v in re.findall(
                    r'\b(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"', meta.group(1) if meta else ""
                )
            }
            self.metrics[after.group(1)] = Metric(
                static=after.group(1),
                type=re.sub(r"\s+", "", after.group(2)).split("::")[-1],
                ctor=re.sub(r"\s+", " ", after.group(3).strip()),
                name=fields.get("name"),
                description=fields.get("description"),
                metadata=metadata,
                line=self.line(m.start()),
                end_line=self.line(after.start(1)),
                offset=m.start(),
            )
        self.groups: dict[str, Group] = {}
        for m in _GROUP.finditer(code):
            close = match_close(code, m.end() - 1)
            args = split_top(code[m.end() : close])
            sampler = _STRING.search(args[0]) if args else None
            name = _STRING.fullmatch(args[1]) if len(args) > 1 else None
            self.groups[m.group(1)] = Group(
                static=m.group(1),
                sampler=sampler.group(1) if sampler else None,
                name=name.group(1) if name else None,
                reader_stamped=m.group(2) == "new_reader_stamped",
                line=self.line(m.start()),
            )
        for m in _GROUP_REG.finditer(code):
            if m.group(1) in self.groups:
                self.groups[m.group(1)].registered = self.line(m.start())
        self.consts = {m.group(1): m.group(2) for m in _RUST_CONST.finditer(code)}


def build_rs_descriptions(text: str) -> list[tuple[int, str, str]]:
    """(offset of `#[metric(`, name, description) exactly as Rezolus' build.rs
    `parse_metric_attrs` extracts them: raw text (comments included), a block
    ends at the first `)]`, fields are found by the literal `name = "` and
    `description = "` and end at the next `"`."""
    found, i = [], 0
    while True:
        start = text.find("#[metric(", i)
        if start < 0:
            return found
        end = text.find(")]", start)
        if end < 0:
            i = start + 9
            continue
        block = text[start : end + 2]
        name, desc = _build_rs_field(block, "name"), _build_rs_field(block, "description")
        if name is not None and desc is not None:
            found.append((start, name, desc))
        i = end + 2


def _build_rs_field(block: str, field: str) -> str | None:
    pattern = f'{field} = "'
    at = block.find(pattern)
    if at < 0:
        return None
    rest = block[at + len(pattern) :]
    end = rest.find('"')
    return rest[:end] if end >= 0 else None


# --------------------------------------------------------------------------
# a sampler and a tree
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Sampler:
    group: str
    sampler: str
    dir: Path
    c: CSource
    mod: ModRs
    stats: StatsRs

    @property
    def name(self) -> str:
        return self.mod.name or f"{self.group}_{self.sampler}"

    def rel(self, root: Path, path: Path) -> str:
        try:
            return str(path.relative_to(root))
        except ValueError:
            return str(path)

    def program_hooks(self) -> dict[tuple[str, str], list[CFunc]]:
        hooks: dict[tuple[str, str], list[CFunc]] = {}
        for prog in self.c.programs:
            hooks.setdefault(hook_of(prog.section or ""), []).append(prog)
        return hooks

    def loaded(self, btf: bool, arch: str) -> list[CFunc]:
        """Programs the builder loads: twins chosen as mod.rs does, then the arch allowlist."""
        disabled = set()
        if self.mod.twins is not None:
            disabled = set(self.mod.twins[0] if btf else self.mod.twins[1])
        enabled = (
            self.mod.enabled.get(arch, self.mod.enabled.get(None)) if self.mod.enabled else None
        )
        return [
            p
            for p in self.c.programs
            if p.name not in disabled and (enabled is None or p.name in enabled)
        ]


def include_dir(root: Path, arch: str = "x86_64") -> Path:
    return Path(root) / SHARED_BPF / arch


def read_sampler(root: Path, directory: Path) -> Sampler:
    directory = Path(directory)
    for name in ("mod.bpf.c", "mod.rs", "stats.rs"):
        if not (directory / name).is_file():
            raise SourceError(f"{directory} is not a BPF sampler: {name} is missing")
    c_path = directory / "mod.bpf.c"
    return Sampler(
        group=directory.parent.parent.name,
        sampler=directory.name,
        dir=directory,
        c=CSource(c_path, read_text(c_path), include_dir(root)),
        mod=ModRs(directory / "mod.rs", read_text(directory / "mod.rs")),
        stats=StatsRs(directory / "stats.rs", read_text(directory / "stats.rs")),
    )


def sources(root: Path) -> list[tuple[str, str]]:
    """build.rs SOURCES: the (group, sampler) pairs Rezolus builds."""
    build = Path(root) / "build.rs"
    text, _ = lex(read_text(build))
    m = SOURCES_RE.search(text)
    if not m:
        raise SourceError(
            f"{build} has no `const SOURCES: &[(&str, &str)] = &[...]`: not a Rezolus tree"
        )
    return PAIR_RE.findall(m.group(1))


def rust_consts(root: Path) -> dict[str, str]:
    """`pub const`/`pub static` integers of src/agent/mod.rs and src/common/mod.rs."""
    found: dict[str, str] = {}
    for rel in ("src/common/mod.rs", "src/agent/mod.rs"):
        path = Path(root) / rel
        if path.is_file():
            code, _ = lex(read_text(path))
            found.update({m.group(1): m.group(2) for m in _RUST_CONST.finditer(code)})
    return found
