"""Line layout rules of Rezolus' formatters, applied while rendering.

Generated files must already be clean under Rezolus' `.clang-format` (LLVM
base, 100 columns) and default rustfmt, so every construct whose length
depends on the user's names goes through one of these rules. Tests check
the result with the real tools (`tests/test_render.py`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

COLUMNS = 100
# rustfmt keeps an array literal on one line while `[...]` is at most this
# wide (its `array_width` heuristic, measured with rustfmt 1.95).
RUST_ARRAY_WIDTH = 62
# ... and a call's argument list on one line while the call is at most this wide
# (`fn_call_width`).
RUST_CALL_WIDTH = 60
# ... and a method chain on one line while it is at most this wide (`chain_width`).
RUST_CHAIN_WIDTH = 60


def fill(prefix: str, items: list[str], sep: str, end: str, columns: int = COLUMNS) -> str:
    """clang-format's bin-packing: `prefix` + items joined by `sep + ' '` + `end`.

    Lines break after `sep`; continuation lines align with the first item,
    as clang-format does after an open bracket or an `=`.
    """
    if not items:
        return prefix + end
    lines, current = [], prefix
    indent = " " * len(prefix)
    for i, item in enumerate(items):
        piece = item + (end if i == len(items) - 1 else sep)
        at_start = current in (prefix, indent)
        candidate = current + ("" if at_start else " ") + piece
        if len(candidate) > columns and not at_start:
            lines.append(current)
            current = indent + piece
        else:
            current = candidate
    lines.append(current)
    return "\n".join(lines)


def comment(text: str, indent: str = "", marker: str = "//", columns: int = COLUMNS) -> str:
    """A line comment wrapped to the column limit (clang-format reflows longer ones)."""
    prefix = f"{indent}{marker} "
    return "\n".join(
        textwrap.wrap(
            text,
            width=columns,
            initial_indent=prefix,
            subsequent_indent=prefix,
            break_on_hyphens=False,
        )
    )


def rust_str_array(items: list[str], indent: str) -> str:
    """`&["a", "b"]` as rustfmt lays it out at `indent`."""
    quoted = [f'"{item}"' for item in items]
    one_line = "[" + ", ".join(quoted) + "]"
    if len(one_line) <= RUST_ARRAY_WIDTH:
        return "&" + one_line
    inner = "".join(f"{indent}    {q},\n" for q in quoted)
    return f"&[\n{inner}{indent}]"


def rust_skeleton_include(name: str, indent: str = "    ") -> str:
    """`include!` of the libbpf-cargo skeleton `$OUT_DIR/<name>.bpf.rs`, rustfmt-shaped."""
    args = ['env!("OUT_DIR")', f'"/{name}.bpf.rs"']
    inner = f"concat!({', '.join(args)})"
    if len(inner) <= RUST_CALL_WIDTH:
        return f"{indent}include!({inner});"
    body = "".join(f"{indent}    {arg},\n" for arg in args[:-1]) + f"{indent}    {args[-1]}\n"
    return f"{indent}include!(concat!(\n{body}{indent}));"


def rust_static(name: str, rust_type: str, init: str) -> str:
    """`pub static NAME: T = init;`, broken after `=` when over the column limit."""
    line = f"pub static {name}: {rust_type} = {init};"
    if len(line) <= COLUMNS:
        return line
    return f"pub static {name}: {rust_type} =\n    {init};"


def rust_call(method: str, args: list[str], indent: str) -> str:
    """`<method>(a, b, c)` in a builder chain at `indent`, as rustfmt lays it out:
    on one line while the arguments fit `fn_call_width`, else one per line."""
    inner = ", ".join(args)
    if len(inner) <= RUST_CALL_WIDTH and len(indent) + len(method) + len(inner) + 2 <= COLUMNS:
        return f"{method}({inner})"
    body = "".join(f"{indent}    {arg},\n" for arg in args)
    return f"{method}(\n{body}{indent})"


def assign_call(prefix: str, call: str, args: list[str], indent: str, columns: int = COLUMNS) -> str:
    """`<prefix> = call(args);` as clang-format lays it out: one line; else broken
    after `=` with the call on the next line; else arguments bin-packed."""
    one = f"{prefix} = {call}({', '.join(args)});"
    if len(one) <= columns:
        return one
    rest = f"{indent}    {call}({', '.join(args)});"
    if len(rest) <= columns:
        return f"{prefix} =\n{rest}"
    return c_call(f"{prefix} = ", call, args)


def rust_commented_items(items: list[tuple[str, str | None]], indent: str) -> str:
    """Vector items one per line, some with a trailing `// comment`, as rustfmt lays
    them out (its `write_list` post-comment alignment, src/lists.rs): the first
    commented item of a run computes how wide the run's items are, scanning ahead
    while items are commented and fit `max_width` with that first item's comment
    width; every item of the run then pads its comment to that width. (A comment on
    a line of its own after a single item would be pulled up onto it by rustfmt,
    which is why the comments trail.)"""
    out: list[str] = []
    run_width: int | None = None

    def scan(start: int, overhead: int) -> int:
        width = 0
        for j in range(start, len(items)):
            text, note = items[j]
            if j > start and (note is None or len(text) + overhead > COLUMNS):
                break
            width = max(width, len(text))
        return width

    for i, (text, note) in enumerate(items):
        line = f"{indent}{text},"
        if note is None:
            run_width = None
            out.append(line)
            continue
        comment = f"// {note}"
        if run_width is None and i < len(items) - 1:
            # rustfmt measures the first item's line without the list's indentation
            width = len(line) - (len(indent) if i == 0 else 0)
            run_width = scan(i, width + len(comment))
        padding = max(0, (run_width or 0) - len(text)) + 1
        out.append(f"{line}{' ' * padding}{comment}")
    return "\n".join(out)


def c_function(head: str, name: str, params: list[str], tail: str = ") {") -> str:
    """A function head `<head><name>(params) {` as clang-format (LLVM, 100 columns) lays
    it out. Measured on clang-format 14 over 300 random heads (bench-free: see
    tests/test_lines.py): parameters bin-packed and aligned after the parenthesis
    when they fit; otherwise a break after the parenthesis with the parameters
    indented 4, except that a `static __always_inline int` head goes on a line of its
    own when that costs at most one line more."""
    aligned = fill(f"{head}{name}(", params, ",", tail)
    if _fits(aligned):
        return aligned
    after = f"{head}{name}(\n" + fill("    ", params, ",", tail)
    own = f"{head.rstrip()}\n" + fill(f"{name}(", params, ",", tail)
    if head.strip() != "int" and _fits(own) and own.count("\n") - after.count("\n") <= 1:
        return own
    return after


def _fits(text: str) -> bool:
    return all(len(line) <= COLUMNS for line in text.split("\n"))


def rust_chain(head: str, links: list[str], indent: str) -> str:
    """`head.a.b()` as rustfmt lays a chain out: on one line while it is at most
    `chain_width` (60), else one `.link` per line indented 4 more."""
    one = head + "".join(f".{link}" for link in links)
    if len(one) <= RUST_CHAIN_WIDTH:
        return indent + one
    return indent + head + "".join(f"\n{indent}    .{link}" for link in links)


def c_call(prefix: str, name: str, args: list[str], tail: str = ");") -> str:
    """A call statement `<prefix><name>(args);` (prefix: indentation, maybe `return `)
    as clang-format lays it out (measured on 400 random calls, tests/test_lines.py):
    arguments bin-packed and aligned after the parenthesis, unless breaking after the
    parenthesis (continuation indent: 4 beyond the statement) takes fewer lines or
    the aligned form does not fit."""
    aligned = fill(f"{prefix}{name}(", args, ",", tail)
    indent = " " * (len(prefix) - len(prefix.lstrip()) + 4)
    after = f"{prefix}{name}(\n" + fill(indent, args, ",", tail)
    if _fits(aligned) and aligned.count("\n") <= after.count("\n"):
        return aligned
    return after


# Rezolus' .clang-format (used when the target tree's own file is not at hand).
REZOLUS_CLANG_FORMAT = (
    "{BasedOnStyle: LLVM, IndentWidth: 4, TabWidth: 4, UseTab: Never, BreakBeforeBraces: Attach, "
    "AllowShortFunctionsOnASingleLine: None, AllowShortIfStatementsOnASingleLine: false, "
    "AllowShortLoopsOnASingleLine: false, AllowShortBlocksOnASingleLine: false, "
    "AllowShortCaseLabelsOnASingleLine: false, ColumnLimit: 100, PointerAlignment: Left, "
    "AlignAfterOpenBracket: Align, AlignOperands: true, AlwaysBreakAfterReturnType: None, "
    "SortIncludes: false, IncludeBlocks: Preserve, SpaceBeforeParens: ControlStatements, "
    "SpacesInCStyleCastParentheses: false, Cpp11BracedListStyle: false}"
)


def formatted(text: str, language: str, tree: Path | None = None) -> str:
    """`text` through the formatter Rezolus uses, when it is installed.

    The layout rules above already produce what clang-format and rustfmt keep
    for every shape the tests draw; a few shapes (long function heads, where
    clang-format weighs penalties) they cannot predict, so the formatter has the
    last word where it exists. Without it the text is returned as laid out.
    `REZOLUS_SAMPLER_NO_FORMAT=1` turns this off (tests of the rules alone)."""
    if os.environ.get("REZOLUS_SAMPLER_NO_FORMAT"):
        return text
    if language == "c":
        exe = next((shutil.which(n) for n in ("clang-format", "clang-format-14") if shutil.which(n)), None)
        style_file = Path(tree) / ".clang-format" if tree else None
        style = f"file:{style_file}" if style_file and style_file.is_file() else REZOLUS_CLANG_FORMAT
        command = [exe, f"--style={style}", "--assume-filename=mod.bpf.c"] if exe else None
    else:
        exe = shutil.which("rustfmt")
        command = [exe, "--edition", "2021", "--emit", "stdout"] if exe else None
    if command is None:
        return text
    try:
        proc = subprocess.run(command, input=text, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return text
    if proc.returncode != 0 or not proc.stdout.strip():
        return text
    return proc.stdout
