#!/usr/bin/env python3
"""Bounds-check shapes for a computed counter slot, measured side by side.

A computed slot reaches the bank through the map's ``<map>_slot_add(bank, idx,
value)``; the label's own range check (or its overflow routing) comes first, so
``idx`` is always below the bank width when it gets there. The question is what
that function must contain for the kernel's verifier to accept every program,
and what it costs. The candidates, each a rewrite of the function's body in the
generated ``mod.bpf.c`` (nothing else changes):

* ``generated``: what the template generates: ``barrier_var(idx)``, then
  ``if (idx < WIDTH)`` before the access;
* ``check``: the same check without ``barrier_var`` (clang may test a copy of
  the register, or drop the check as implied by the label's);
* ``mask``: ``slot[idx & (WIDTH - 1)]`` and no check, where the width is a power
  of two (exact: ``idx`` is already below the width); other widths keep
  ``generated``;
* ``none``: the access alone, trusting the label's range check (the shape of the
  first template version, which the verifier refused);
* ``hoist``: ``barrier_var`` on each label value before the guard (or overflow
  select) that bounds it, and nothing at the access.

Part 1 renders the bounds matrix of ``tests/test_bounds_matrix.py`` (the default
cells: every label size, value form, overflow choice, argument type and attach
style), rewrites each sampler per shape, compiles it with Rezolus' clang flags and
loads every program (both tp_btf twin sets) through the verifier: programs
accepted and refused per shape, and verified instructions summed over the
programs every shape loads. Part 2 attaches the generated
``bench/compare/syscall_multi.yml`` sampler (a computed ``id & 3`` lane, bank
width 8) and a signed-index one (``raw_syscalls:sys_enter``'s ``long id`` indexing
a 33-value label with an overflow value, bank width 40) in each shape that loads,
drives getppid() pinned to CPU 0 and reads the kernel's own run-time accounting
(``bpf_stats``), interleaved rounds, ratios paired per round against ``generated``.

Usage (root)::

    .venv/bin/python bench/bounds_shapes.py [--rounds N] [--events N] [--full]
                                            [--shapes a,b] [--no-timing]

``CLANG=<compiler>`` compiles with another clang. clang 22 was used through the
``ziglang`` wheel (``pip download ziglang``; its ``zig cc`` is clang 22.1) and
this wrapper, which maps the target name and adds clang's usual include path::

    #!/bin/bash
    args=()
    while [ $# -gt 0 ]; do
      if [ "$1" = "-target" ] && [ "$2" = "bpf" ]; then
        args+=(-target bpfel-freestanding); shift 2; continue
      fi
      args+=("$1"); shift
    done
    exec /path/to/ziglang/zig cc "${args[@]}" -idirafter /usr/local/include -idirafter /usr/include

Results (Linux 6.18.44, 2 vCPUs, AMD EPYC; clang 14.0.6, and clang 22.1 where said).

``bench/bounds_shapes.py --rounds 9`` (default matrix: 21 samplers, 31 programs;
verified instructions over the 21 programs every shape loads)::

    shape       refused, clang 14   refused, clang 22   verified insns (clang 14)
    generated   0                   0                   19106
    check       7 (4 samplers)      8 (5 samplers)      17479
    mask        0                   4 (2)               18792
    none        10 (6)              8 (5)               17050
    hoist       1 (1)               1 (1)               19459

    ns/event, getppid x 400000 (tp_btf twin), median of 9; ratio paired per round:
    multi (id & 3, width 8):    generated 50.0; check 1.02x, mask 1.01x, none 1.00x,
                                hoist 1.00x; verified 28 / 23 / 23 / 23 / 26
    numbers (long id, 33 values, overflow, width 40): generated 48.4; check 1.01x,
                                none 1.00x, hoist 1.01x; verified 25 / 23 / 23 / 23

``--full --shapes generated,hoist --no-timing`` (1464 samplers, 1952 programs):
clang 14: generated loads all, hoist is refused for 116 programs of 88 samplers
(269539 and 267214 verified instructions over the 1836 programs both load);
clang 22: the same 0 and 116 (209151 and 207440).

Kept: ``generated``. ``check``, ``mask`` and ``none`` are refused for some label
sizes and argument types, depending on the compiler (with ``mask`` clang folds
the mask into the index arithmetic of a multi-label slot, ``(a << 8) | (b << 3)``,
whose bound the verifier cannot recombine). ``hoist`` was tried as the
generator while the matrix lacked two overflow labels with a stride: it loaded
everything with 0.90x (clang 14) and 0.66x (clang 22) the verified instructions,
until the property-based tests drew ``(op < 65 ? op : 38) * 3 + (kind < 3 ? kind
: 1)``, which clang computes as ``op * 3 + 1`` before the select; the verifier
refuses the unbounded offset ("math between map_value pointer and register with
unbounded min value"). None of the shapes differs in time by more than the noise.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(HERE)]

from rezolus_sampler.kernel import bpf  # noqa: E402

SHAPES = ("generated", "check", "mask", "none", "hoist")
_FUNCTION = re.compile(
    r"(static __always_inline void (\w+)_slot_add\(struct \w+\* bank, u64 idx, u64 value\) \{\n)"
    r"(.*?)(\n\}\n)", re.DOTALL)
_WIDTH = re.compile(r"if \(idx < (\w+)\)")
_IDENT = re.compile(r"\b[a-z_][a-z0-9_]*\b")
ADD = "__atomic_fetch_add(&bank->slot[{}], value, __ATOMIC_RELAXED);"


def widths(source: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"#define (\w+_WIDTH) (\d+)", source)}


def reshape(source: str, shape: str) -> str:
    """The generated source with every `<map>_slot_add` body in `shape`."""
    known = widths(source)

    def body(m: re.Match) -> str:
        macro = _WIDTH.search(m[3])[1]
        if shape == "check":
            inner = f"    if (idx < {macro}) {{\n        {ADD.format('idx')}\n    }}"
        elif shape == "mask" and known[macro] & (known[macro] - 1) == 0:
            inner = f"    {ADD.format(f'idx & ({macro} - 1)')}"
        elif shape in ("none", "hoist"):
            inner = f"    {ADD.format('idx')}"
        else:  # generated, or mask on a width that is not a power of two
            inner = m[3]
        return m[1] + inner + m[4]

    out = _FUNCTION.sub(body, source)
    return _hoist(out) if shape == "hoist" else out


def _hoist(source: str) -> str:
    """`barrier_var` on each label value right before the guard (or the overflow
    select) that bounds it, instead of on the slot at the access."""
    lines = source.split("\n")
    inserts: dict[int, list[str]] = {}
    for i, line in enumerate(lines):
        if "_slot_add(" not in line or line.startswith("static"):
            continue
        indent = len(line) - len(line.lstrip())
        start = i - 1
        while not lines[start].lstrip().startswith("idx = "):
            start -= 1
        names = [v for ln in lines[start:i] for v in _IDENT.findall(ln.split("=", 1)[-1])]
        at = start
        if indent > 4:  # inside a guard: the barrier goes before the `if`
            while not lines[at].startswith(" " * (indent - 4) + "if ("):
                at -= 1
        pad = " " * (len(lines[at]) - len(lines[at].lstrip()))
        for v in dict.fromkeys(names):
            if v != "idx" and f"{pad}barrier_var({v});" not in inserts.setdefault(at, []):
                inserts[at].append(f"{pad}barrier_var({v});")
    out = []
    for i, line in enumerate(lines):
        out += inserts.get(i, [])
        out.append(line)
    return "\n".join(out)


def program_sets(names: list[str]) -> list[list[str]]:
    """One load per tp_btf twin set (Rezolus loads one of them), else everything."""
    btf = [n for n in names if n.endswith("_btf")]
    raw = [n for n in names if n.endswith("_raw")]
    return [btf, raw] if btf and raw else [names]


def verify(obj: Path) -> list[tuple[str, int | None]]:
    """(program, verified insns or None when refused) for every program."""
    with bpf.BpfObject.open(obj) as probe:
        names = probe.program_names()
    out = []
    for keep in program_sets(names):
        with bpf.BpfObject.open(obj) as loaded:
            for name in names:
                loaded.set_autoload(name, name in keep)
            try:
                loaded.load()
            except bpf.BpfError:
                # refused as a set: load each alone to tell which
                for name in keep:
                    out.append((name, _verify_one(obj, names, name)))
                continue
            out += [(name, loaded.prog_info(name).verified_insns) for name in keep]
    return out


def _verify_one(obj: Path, names: list[str], keep: str) -> int | None:
    with bpf.BpfObject.open(obj) as loaded:
        for name in names:
            loaded.set_autoload(name, name == keep)
        try:
            loaded.load()
        except bpf.BpfError:
            return None
        return loaded.prog_info(keep).verified_insns


def matrix(tmp: Path, full: bool, shapes: tuple[str, ...]) -> dict:
    from support import make_tree, write_sampler
    from test_bounds_matrix import default_cells, full_cells

    tree = make_tree(tmp / "matrix" / "rezolus")
    cells = full_cells() if full else default_cells()
    sources = {c.name: (write_sampler(tree, c.answers()) / "mod.bpf.c").read_text() for c in cells}
    jobs = [(name, shape) for name in sources for shape in shapes]

    def build(job: tuple[str, str]) -> tuple[tuple[str, str], Path | None]:
        name, shape = job
        src = tmp / "matrix" / shape / f"{name}.bpf.c"
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text(reshape(sources[name], shape))
        obj = src.with_suffix(".o")
        try:
            bpf.compile_bpf(src, obj, tree)
        except bpf.BpfError:
            return job, None
        return job, obj

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        objs = dict(pool.map(build, jobs))
    loaded = {job: (verify(obj) if obj else None) for job, obj in objs.items()}
    table = {}
    for shape in shapes:
        progs = [p for (name, s), r in loaded.items() if s == shape for p in (r or [])]
        table[shape] = {
            "samplers": len(sources),
            "compile_failed": sum(1 for (n, s), o in objs.items() if s == shape and o is None),
            "programs": len(progs),
            "refused": sum(1 for _, v in progs if v is None),
            "refused_samplers": sorted({n for (n, s), r in loaded.items() if s == shape
                                        and r and any(v is None for _, v in r)}),
        }
    # verified instructions over the programs every shape loads
    common: set[tuple[str, str]] = set()
    for name in sources:
        per_shape = [{p for p, v in (loaded[(name, s)] or []) if v is not None} for s in shapes]
        common |= {(name, p) for p in set.intersection(*per_shape)}
    for shape in shapes:
        insns = {(n, p): v for (n, s), r in loaded.items() if s == shape for p, v in (r or [])}
        table[shape]["verified_common"] = sum(insns[k] for k in common)
    table["_common_programs"] = len(common)
    return table


SIGNED = {
    "group": "syscall", "sampler": "numbers", "attach": "tp_btf", "layout": "totals",
    "description": "Syscall entries by number, for the bounds-shape benchmark",
    "tracepoints": ["raw_syscalls:sys_enter(regs, id)"],
    "counters": [{
        "name": "syscall_numbers_entered", "description": "Syscalls entered, by number (32 and above together)",
        "unit": "syscalls", "labels": {"nr": {"values": 33, "overflow": "32"}},
        "increments": [{"at": "raw_syscalls:sys_enter", "index": {"nr": "id"}}],
    }],
}


def timing(tmp: Path, rounds: int, events: int, shapes: tuple[str, ...]) -> dict:
    from compare import DRIVER_C
    from support import load_answers, make_tree, write_sampler

    tree = make_tree(tmp / "timing" / "rezolus")
    specs = {"multi (id & 3, width 8)": load_answers(HERE / "compare" / "syscall_multi.yml"),
             "numbers (long id, 33 values, overflow 32, width 40)": SIGNED}
    objs: dict[tuple[str, str], Path] = {}
    for label, answers in specs.items():
        source = (write_sampler(tree, answers) / "mod.bpf.c").read_text()
        for shape in shapes:
            text = reshape(source, shape)
            if shape == "mask" and text == reshape(source, "generated"):
                continue  # the same program as generated (no width is a power of two)
            src = tmp / "timing" / f"{answers['sampler']}_{shape}.bpf.c"
            src.write_text(text)
            obj = src.with_suffix(".o")
            bpf.compile_bpf(src, obj, tree)
            if all(v is not None for _, v in verify(obj)):
                objs[(label, shape)] = obj
    (tmp / "driver.c").write_text(DRIVER_C)
    driver = tmp / "driver"
    subprocess.run(["cc", "-O2", "-o", str(driver), str(tmp / "driver.c")], check=True)
    samples: dict[tuple[str, str], list[float]] = {k: [] for k in objs}
    insns: dict[tuple[str, str], int] = {}
    keys = list(objs)
    with bpf.bpf_stats_enabled():
        subprocess.run([str(driver), "getppid", str(events // 4)], check=True)
        for r in range(rounds):
            for key in keys[r % len(keys):] + keys[: r % len(keys)]:
                with bpf.BpfObject.open(objs[key]) as obj:
                    names = obj.program_names()
                    for name in names:
                        obj.set_autoload(name, name.endswith("_btf"))
                    obj.load()
                    (prog,) = obj.attach_all()
                    before = obj.prog_info(prog)
                    subprocess.run([str(driver), "getppid", str(events)], check=True)
                    after = obj.prog_info(prog)
                    insns[key] = after.verified_insns
                samples[key].append((after.run_time_ns - before.run_time_ns)
                                    / max(1, after.run_cnt - before.run_cnt))
    out = {}
    for (label, shape), xs in samples.items():
        ref = samples.get((label, "generated"))
        ratios = [x / b for x, b in zip(xs, ref)] if ref else []
        out.setdefault(label, {})[shape] = {
            "ns": statistics.median(xs), "min": min(xs), "max": max(xs),
            "ratio": statistics.median(ratios) if ratios else None, "verified_insns": insns[(label, shape)],
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=9, help="interleaved timing rounds (default 9)")
    ap.add_argument("--events", type=int, default=400_000, help="getppid calls per run (default 400000)")
    ap.add_argument("--full", action="store_true",
                    help="the whole bounds matrix (REZOLUS_SAMPLER_FULL's cells; tens of minutes)")
    ap.add_argument("--shapes", default=",".join(SHAPES),
                    help=f"comma-separated shapes (default {','.join(SHAPES)})")
    ap.add_argument("--no-timing", action="store_true", help="the verifier part only")
    args = ap.parse_args()
    shapes = tuple(args.shapes.split(","))
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        ap.error(f"unknown shape(s) {', '.join(unknown)}; the shapes are {', '.join(SHAPES)}")
    ok, why = bpf.bpf_available()
    if not ok:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    rezolus = Path(os.environ.get("REZOLUS_DIR", REPO.parent / "shared" / "rezolus"))
    os.environ["REZOLUS_DIR"] = str(rezolus.resolve())  # for tests/support.py's scratch trees
    started = time.monotonic()
    affinity = os.sched_getaffinity(0)
    with tempfile.TemporaryDirectory(prefix="bounds-shapes-") as tmp:
        table = matrix(Path(tmp), args.full, shapes)
        os.sched_setaffinity(0, {0})
        try:
            times = {} if args.no_timing else timing(Path(tmp), args.rounds, args.events, shapes)
        finally:
            os.sched_setaffinity(0, affinity)
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/bounds_shapes.py", *sys.argv[1:]])
    clang = subprocess.run([bpf._clang(), "--version"], capture_output=True, text=True).stdout
    print(f"Command: `{command}` ({time.monotonic() - started:.0f} s; Linux {os.uname().release}; "
          f"{clang.splitlines()[0]})\n")
    common = table.pop("_common_programs")
    print(f"**Verifier, bounds matrix** ({next(iter(table.values()))['samplers']} samplers; verified "
          f"instructions summed over the {common} programs every shape loads)\n")
    print("| shape | samplers that do not compile | programs | refused | samplers with a refused program "
          "| verified insns (common) |")
    print("|---|---:|---:|---:|---:|---:|")
    for shape, row in table.items():
        print(f"| {shape} | {row['compile_failed']} | {row['programs']} | {row['refused']} | {len(row['refused_samplers'])} "
              f"| {row['verified_common']} |")
    if times:
        print(f"\n**Cost per event** (getppid x {args.events}, {args.rounds} interleaved rounds, "
              "tp_btf twin; median [min-max] ns, ratio paired per round against generated)\n")
        print("| sampler | shape | ns/event | ÷ generated | verified insns |")
        print("|---|---|---|---:|---:|")
    for label, rows in times.items():
        for shape, row in rows.items():
            ratio = f"{row['ratio']:.2f}×" if row["ratio"] is not None else "—"
            print(f"| {label} | {shape} | {row['ns']:.1f} [{row['min']:.1f}-{row['max']:.1f}] "
                  f"| {ratio} | {row['verified_insns']} |")
    refused = {s: r["refused_samplers"] for s, r in table.items() if r["refused_samplers"]}
    if refused:
        print("\nRefused: " + "; ".join(
            f"{s}: {', '.join(v[:12])}{f' and {len(v) - 12} more' if len(v) > 12 else ''}"
            for s, v in refused.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
