"""Line layout rules of Rezolus' formatters, applied while rendering.

Generated files must already be clean under Rezolus' `.clang-format` (LLVM
base, 100 columns) and default rustfmt, so every construct whose length
depends on the user's names goes through one of these rules. Tests check
the result with the real tools (`tests/test_render.py`).
"""

from __future__ import annotations

import textwrap

COLUMNS = 100
# rustfmt keeps an array literal on one line while `[...]` is at most this
# wide (its `array_width` heuristic, measured with rustfmt 1.95).
RUST_ARRAY_WIDTH = 62
# ... and a call's argument list on one line while the call is at most this wide
# (`fn_call_width`).
RUST_CALL_WIDTH = 60


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
    return fill(f"{prefix} = {call}(", args, ",", ");", columns)
