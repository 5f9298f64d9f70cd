#!/usr/bin/env python3
"""Histogram bucket index: Rezolus' inlined ``histogram_incr`` against cheaper C
that yields the same indices, measured side by side in one run.

Every candidate is compiled into its own object with Rezolus' clang flags and
``helpers.h``; each object has three ``raw_tp/sys_enter`` programs that record
1, 2 and 4 histogram values per event into 1, 2 and 4 Rezolus-shaped maps
(mmapable ``ARRAY``, u32 -> u64, ``HISTOGRAM_BUCKETS_POW_3`` = 496 entries), the
value k being ``bpf_ktime_get_ns() >> 9k`` (distinct values, so the compiler
cannot share one index computation between increments).  Every increment is
helpers.h's ``array_incr(&map, idx)``, which is what ``histogram_incr`` does after
``value_to_index``; only the index computation differs:

* ``rezolus``: ``histogram_incr(&map, HISTOGRAM_POWER, v)``, i.e. histogram.h's
  ``value_to_index`` (the ``clz`` mask tree) inlined at every increment;
* ``rezolus_call``: the same ``value_to_index`` in one global ``__noinline``
  function (a BPF-to-BPF call; the code exists once per program);
* ``shift``: ``floor(log2(v >> 3))`` by a shift binary search, inlined;
* ``shift_call``: ``shift`` in one global ``__noinline`` function;
* ``shift_static_call``: ``shift`` in a ``static __noinline`` function (the
  verifier re-walks a static subprogram at every call site);
* ``select``: the search written as ``x != 0`` tests (clang emits short skips);
* ``branchless_v1``: the search with no jumps (each step's shift amount is
  computed arithmetically); clang turns each step into a 64-bit mask (``lddw``);
* ``emitted``: the exact C text ``rezolus_sampler/emit/histogram_c.py`` gives the
  templates: ``branchless_v1`` with ``& 1`` on each carry bit, so no ``lddw``;
* ``floor``: the same programs with no increment (entry/exit + one ktime read).

``tests/test_histogram_index.py`` proves every candidate here returns the crate's
index for every bucket boundary, natively and in the kernel; this script only
measures.  Cost per event is the kernel's own accounting (``bpf_stats``:
``Δrun_time_ns / Δrun_cnt``); instruction counts are ``verified_insns`` (what the
verifier processed) and ``xlated_insns`` (the program length after verification).
Programs are loaded one at a time, attached, driven by a C loop of ``getppid``
pinned to CPU 0 (background syscalls of other processes on the hook count too),
detached; the order rotates every round; ratios are paired per round.

``--samplers`` adds hand-written Rezolus samplers that keep histograms
(``syscall/latency``: 16 inlined increments in ``sys_exit``; ``scheduler/runqueue``:
three in ``sched_switch``), each as in the snapshot and with every
``histogram_incr(&m, HISTOGRAM_POWER, v)`` / ``value_to_index(v, HISTOGRAM_POWER)``
replaced by the emitted ``histogram_index`` (nothing else changed), loaded with
the twins Rezolus picks, measured the same way (``sys_exit`` runs on the driver's
getppid calls, ``sched_switch`` on every context switch of the machine).

Usage::

    .venv/bin/python bench/histogram_index.py [--rounds N] [--events N] [--values V]
                                              [--samplers] [--json]

Needs root.  REZOLUS_DIR selects the Rezolus checkout (default ../shared/rezolus).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rezolus_sampler.emit import histogram_c  # noqa: E402
from rezolus_sampler.kernel import bpf  # noqa: E402

COUNTS = (1, 2, 4)  # histograms recorded per event
BUCKETS = 496

DRIVER_C = r"""
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char** argv) {
    long n = argc > 1 ? atol(argv[1]) : 0;
    for (long i = 0; i < n; i++) {
        syscall(SYS_getppid);
    }
    return 0;
}
"""

SHIFT = """\
static __always_inline u32 shift_index(u64 value) {
    u64 w = value >> 3;
    u32 s = 0;

    if (w >> 32) {
        w >>= 32;
        s += 32;
    }
    if (w >> 16) {
        w >>= 16;
        s += 16;
    }
    if (w >> 8) {
        w >>= 8;
        s += 8;
    }
    if (w >> 4) {
        w >>= 4;
        s += 4;
    }
    if (w >> 2) {
        w >>= 2;
        s += 2;
    }
    if (w >> 1) {
        s += 1;
    }
    return (s << 3) + (u32)(value >> s);
}
"""

SELECT = """\
static __always_inline u32 select_index(u64 value) {
    u64 w = value >> 3;
    u64 s, t;

    // t = K if w >> K is non-zero, else 0: 0 - x has its top bit set iff x != 0
    s = (0 - (w >> 32)) >> 63 << 5;
    w >>= s;
    t = (0 - (w >> 16)) >> 63 << 4;
    w >>= t;
    s += t;
    t = (0 - (w >> 8)) >> 63 << 3;
    w >>= t;
    s += t;
    t = (0 - (w >> 4)) >> 63 << 2;
    w >>= t;
    s += t;
    t = (0 - (w >> 2)) >> 63 << 1;
    w >>= t;
    s += t;
    s += w >> 1;
    return (s << 3) + (u32)(value >> s);
}
"""

BRANCHLESS_V1 = """\
static __always_inline u32 branchless_v1_index(u64 value) {
    u64 w = value >> 3;
    u64 s = 0, t;

    // each step: t = K if w >> K is non-zero, else 0 (w >> K < 2^K here)
    t = ((w >> 32) + 0xFFFFFFFFULL) >> 32 << 5;
    w >>= t;
    s += t;
    t = ((w >> 16) + 0xFFFFULL) >> 16 << 4;
    w >>= t;
    s += t;
    t = ((w >> 8) + 0xFFULL) >> 8 << 3;
    w >>= t;
    s += t;
    t = ((w >> 4) + 0xFULL) >> 4 << 2;
    w >>= t;
    s += t;
    t = ((w >> 2) + 0x3ULL) >> 2 << 1;
    w >>= t;
    s += t;
    s += w >> 1;
    return (s << 3) + (u32)(value >> s);
}
"""


@dataclass(frozen=True)
class Candidate:
    key: str
    desc: str
    defs: tuple[str, ...]  # C definitions placed before the programs (shared ones repeat)
    index: str  # C expression for the bucket index of `{v}`; "" = histogram_incr
    entry: str  # the function tests/test_histogram_index.py calls: u32 f(u64)


CANDIDATES = [
    # entry "": histogram.h's value_to_index(v, 3) itself
    Candidate("rezolus", "histogram.h value_to_index inlined (histogram_incr)", (), "", ""),
    Candidate("rezolus_call", "value_to_index in one global __noinline function",
              ("__noinline u32 rezolus_index_call(u64 value) {\n"
               "    return value_to_index(value, HISTOGRAM_POWER);\n}\n",),
              "rezolus_index_call({v})", "rezolus_index_call"),
    Candidate("shift", "shift binary search, inlined", (SHIFT,), "shift_index({v})",
              "shift_index"),
    Candidate("shift_call", "shift search in one global __noinline function",
              (SHIFT, "__noinline u32 shift_index_call(u64 value) {\n"
               "    return shift_index(value);\n}\n"),
              "shift_index_call({v})", "shift_index_call"),
    Candidate("shift_static_call", "shift search in a static __noinline function",
              (SHIFT, "static __noinline u32 shift_index_static(u64 value) {\n"
               "    return shift_index(value);\n}\n"),
              "shift_index_static({v})", "shift_index_static"),
    Candidate("select", "shift search as x != 0 selects (clang emits short skips), inlined",
              (SELECT,), "select_index({v})", "select_index"),
    Candidate("branchless_v1", "shift search without jumps, inlined; clang folds each step's "
              "shifts into a 64-bit mask (lddw)", (BRANCHLESS_V1,), "branchless_v1_index({v})",
              "branchless_v1_index"),
    Candidate("emitted", "branchless: the same with `& 1` on each carry bit (no lddw), inlined: "
              "rezolus_sampler/emit/histogram_c.py", (histogram_c.index_function(),),
              histogram_c.INDEX_FUNCTION + "({v})", histogram_c.INDEX_FUNCTION),
]
FLOOR = Candidate("floor", "no increment (entry/exit + ktime read)", (), "", "")


def definitions(candidates: list[Candidate]) -> str:
    """The C definitions of `candidates`, each block once."""
    return "\n".join(dict.fromkeys(block for c in candidates for block in c.defs))


VALUES = {
    # value k of an event, from t = bpf_ktime_get_ns()
    "ktime": ("", "(t >> {shift})"),
    # a multiplicative hash of t shifted by a pseudo-random 0..63: bit lengths spread
    # evenly over 0..64, the worst case for code that branches on the magnitude
    "spread": ("    u64 r = t * 0x9E3779B97F4A7C15ULL;\n", "(r >> ((r >> {shift}) & 63))"),
}


def source(c: Candidate, rezolus: Path, values: str = "ktime") -> str:
    """One object: maps hist0..hist3 and programs record1, record2, record4 for candidate `c`."""
    maps = "".join(
        "struct {\n"
        "    __uint(type, BPF_MAP_TYPE_ARRAY);\n"
        "    __uint(map_flags, BPF_F_MMAPABLE);\n"
        "    __type(key, u32);\n"
        "    __type(value, u64);\n"
        "    __uint(max_entries, HISTOGRAM_BUCKETS);\n"
        f"}} hist{k} SEC(\".maps\");\n\n"
        for k in range(max(COUNTS))
    )
    progs = []
    for n in COUNTS:
        setup, value = VALUES[values]
        body = ["    u64 t = bpf_ktime_get_ns();" + ("\n" + setup.rstrip() if setup else "")]
        for k in range(n):
            v = value.format(shift=9 * k)
            if c is FLOOR:
                continue
            if not c.index:
                body.append(f"    histogram_incr(&hist{k}, HISTOGRAM_POWER, {v});")
            else:
                body.append(f"    array_incr(&hist{k}, {c.index.format(v=v)});")
        if c is FLOOR:
            body.append("    (void)t;" + ("\n    (void)r;" if setup else ""))
        progs.append(
            f'SEC("raw_tp/sys_enter")\nint record{n}(void* ctx) {{\n' + "\n".join(body)
            + "\n    return 0;\n}\n"
        )
    return (
        "#include <vmlinux.h>\n"
        f'#include "{rezolus / "src" / "agent" / "bpf" / "helpers.h"}"\n'
        "#include <bpf/bpf_helpers.h>\n\n"
        "#define HISTOGRAM_BUCKETS HISTOGRAM_BUCKETS_POW_3\n"
        "#define HISTOGRAM_POWER 3\n\n"
        + maps + definitions([c]) + "\n" + "\n".join(progs)
        + '\nchar LICENSE[] SEC("license") = "GPL";\n'
    )


SAMPLERS = {
    # sampler: programs measured (the raw_tp twins are disabled, as on a BTF kernel)
    "syscall/linux/latency": ["sys_exit"],
    "scheduler/linux/runqueue": ["handle__sched_switch_btf"],
}
_INCR = re.compile(r"histogram_incr\(\s*&(\w+),\s*HISTOGRAM_POWER,\s*([^;]+?)\);")
_INDEX = re.compile(r"value_to_index\(\s*([^;]+?),\s*HISTOGRAM_POWER\)")


def patched(source: str) -> str:
    """A hand-written mod.bpf.c with Rezolus' index replaced by the emitted one."""
    source, n = _INCR.subn(rf"array_incr(&\1, {histogram_c.INDEX_FUNCTION}(\2));", source)
    source, m = _INDEX.subn(rf"{histogram_c.INDEX_FUNCTION}(\1)", source)
    assert n + m, "no histogram increment to replace"
    last_include = source.rindex("#include")
    at = source.index("\n", last_include) + 1
    return source[:at] + "\n" + histogram_c.index_function() + source[at:]


def compile_samplers(tmp: Path, rezolus: Path) -> dict[tuple[str, str], Path]:
    """(sampler, "hand" | "emitted") -> object, compiled from a scratch copy of the
    BPF headers and the sampler's directory (relative includes resolve; the
    Rezolus checkout is only read)."""
    import shutil

    objs = {}
    for variant in ("hand", "emitted"):
        root = tmp / f"tree-{variant}"
        shutil.copytree(rezolus / "src" / "agent" / "bpf", root / "src" / "agent" / "bpf")
        for rel in SAMPLERS:
            text = (rezolus / "src" / "agent" / "samplers" / rel / "mod.bpf.c").read_text()
            src = root / "src" / "agent" / "samplers" / rel / "mod.bpf.c"
            src.parent.mkdir(parents=True)
            src.write_text(text if variant == "hand" else patched(text))
            objs[(rel, variant)] = tmp / f"{rel.replace('/', '_')}-{variant}.bpf.o"
            bpf.compile_bpf(src, objs[(rel, variant)], root, host_arch())
    return objs


def measure_sampler(obj_path: Path, progs: list[str], run, events: int,
                    res: dict[str, Result]) -> None:
    with bpf.BpfObject.open(obj_path) as obj:
        for name in obj.program_names():
            obj.set_autoload(name, not name.endswith("_raw"))
        obj.load()
        obj.attach_all()
        before = {p: obj.prog_info(p) for p in progs}
        run(events)
        after = {p: obj.prog_info(p) for p in progs}
    for p in progs:
        runs = after[p].run_cnt - before[p].run_cnt
        r = res.setdefault(p, Result())
        r.ns.append((after[p].run_time_ns - before[p].run_time_ns) / runs if runs else float("nan"))
        r.verified, r.xlated = after[p].verified_insns, after[p].xlated_insns


def compile_all(tmp: Path, rezolus: Path, values: str) -> dict[str, Path]:
    objs = {}
    for c in [*CANDIDATES, FLOOR]:
        src = tmp / f"{c.key}.bpf.c"
        src.write_text(source(c, rezolus, values))
        objs[c.key] = tmp / f"{c.key}.bpf.o"
        bpf.compile_bpf(src, objs[c.key], rezolus, host_arch())
    return objs


def host_arch() -> str:
    return {"x86_64": "x86_64", "aarch64": "aarch64"}.get(platform.machine(), platform.machine())


@dataclass
class Result:
    ns: list[float] = field(default_factory=list)
    verified: int = 0
    xlated: int = 0
    ok: bool = True


def measure(obj_path: Path, prog: str, n_hist: int, run, events: int, res: Result,
            floor: bool) -> None:
    with bpf.BpfObject.open(obj_path) as obj:
        for name in obj.program_names():
            obj.set_autoload(name, name == prog)
        obj.load()
        obj.attach_all()
        views = [bpf.mmap_u64_array(obj.map_fd(f"hist{k}"), BUCKETS) for k in range(n_hist)]
        try:
            before_maps = [sum(v) for v in views]
            before = obj.prog_info(prog)
            run(events)
            after = obj.prog_info(prog)
            after_maps = [sum(v) for v in views]
        finally:
            for v in views:
                mm = v.obj
                v.release()
                mm.close()
    runs = after.run_cnt - before.run_cnt
    res.ns.append((after.run_time_ns - before.run_time_ns) / runs if runs else float("nan"))
    res.verified, res.xlated = after.verified_insns, after.xlated_insns
    deltas = [b - a for a, b in zip(before_maps, after_maps)]
    # every map counted every run of the program (and at least the driver's calls)
    res.ok &= floor or all(d >= events for d in deltas)


def med(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def spread(xs: list[float], fmt: str = "{:.1f}") -> str:
    xs = [x for x in xs if x == x]
    if not xs:
        return "-"
    return f"{fmt.format(statistics.median(xs))} [{fmt.format(min(xs))}–{fmt.format(max(xs))}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default 9)")
    ap.add_argument("--events", type=int, default=200_000, help="getppid calls per run")
    ap.add_argument("--values", choices=sorted(VALUES), default="ktime",
                    help="recorded values: ktime >> 9k (stable magnitudes, default) or spread "
                         "(pseudo-random bit lengths 0..64)")
    ap.add_argument("--samplers", action="store_true",
                    help="also hand-written samplers with the emitted index swapped in")
    ap.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = ap.parse_args()
    ok, why = bpf.bpf_available(require_btf=False)
    if not ok:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    rezolus = Path(os.environ.get("REZOLUS_DIR", REPO.parent / "shared" / "rezolus")).resolve()
    command = shlex.join([".venv/bin/python", "bench/histogram_index.py", *sys.argv[1:]])
    started = time.monotonic()
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    cases = [(c, n) for n in COUNTS for c in [FLOOR, *CANDIDATES]]
    results = {(c.key, n): Result() for c, n in cases}
    sampler_cases = [(rel, v) for rel in SAMPLERS for v in ("hand", "emitted")] \
        if args.samplers else []
    sampler_results: dict[tuple[str, str], dict[str, Result]] = {k: {} for k in sampler_cases}
    try:
        with tempfile.TemporaryDirectory(prefix="histidx-") as tmp, bpf.cleanup_on_signals():
            tmpd = Path(tmp)
            objs = compile_all(tmpd, rezolus, args.values)
            sampler_objs = compile_samplers(tmpd, rezolus) if args.samplers else {}
            (tmpd / "driver.c").write_text(DRIVER_C)
            driver = tmpd / "driver"
            subprocess.run(["cc", "-O2", "-o", str(driver), str(tmpd / "driver.c")], check=True)

            def run(n: int) -> None:
                subprocess.run([str(driver), str(n)], check=True)

            with bpf.bpf_stats_enabled() as stats_mode:
                run(args.events // 4)  # warm-up
                for r in range(args.rounds):
                    k = (r * 5) % len(cases)
                    for c, n in cases[k:] + cases[:k]:
                        measure(objs[c.key], f"record{n}", n, run, args.events, results[(c.key, n)],
                                c is FLOOR)
                    for rel, v in sampler_cases[r % 2:] + sampler_cases[:r % 2]:
                        measure_sampler(sampler_objs[(rel, v)], SAMPLERS[rel], run, args.events,
                                        sampler_results[(rel, v)])
    finally:
        os.sched_setaffinity(0, affinity)
    elapsed = time.monotonic() - started

    rows = []
    for c, n in cases:
        res, ref, floor = results[(c.key, n)], results[("rezolus", n)], results[("floor", n)]
        paired = [a / b for a, b in zip(res.ns, ref.ns)]
        net = [(a - f) / (b - f) for a, b, f in zip(res.ns, ref.ns, floor.ns) if b - f > 0]
        rows.append({
            "candidate": c.key, "desc": c.desc, "histograms": n, "ns_per_event": res.ns,
            "ns_median": med(res.ns), "ratio_ns": paired, "ratio_ns_net_of_floor": net,
            "verified_insns": res.verified, "xlated_insns": res.xlated,
            "ratio_verified": res.verified / ref.verified if ref.verified else None,
            "ratio_xlated": res.xlated / ref.xlated if ref.xlated else None, "counts_ok": res.ok,
        })
    sampler_rows = []
    for rel in SAMPLERS if args.samplers else []:
        for prog in SAMPLERS[rel]:
            hand = sampler_results[(rel, "hand")][prog]
            emitted = sampler_results[(rel, "emitted")][prog]
            sampler_rows.append({
                "sampler": rel, "program": prog, "hand_ns": hand.ns, "emitted_ns": emitted.ns,
                "ratio_ns": [a / b for a, b in zip(emitted.ns, hand.ns)],
                "verified_insns": [hand.verified, emitted.verified],
                "xlated_insns": [hand.xlated, emitted.xlated],
            })
    info = {"kernel": platform.release(), "arch": platform.machine(), "nproc": os.cpu_count(),
            "clang": subprocess.run(["clang", "--version"], capture_output=True,
                                    text=True).stdout.splitlines()[0]}
    if args.json:
        print(json.dumps({"command": command, "machine": info, "rounds": args.rounds,
                          "values": args.values,
                          "events": args.events, "elapsed_s": round(elapsed, 1),
                          "stats_mode": stats_mode, "rows": rows, "samplers": sampler_rows},
                         indent=2))
        return 0 if all(r["counts_ok"] for r in rows) else 1
    print(f"Command: `{command}`  ")
    print(f"Machine: Linux {info['kernel']} {info['arch']}, nproc={info['nproc']}; "
          f"{info['clang']}  ")
    print(f"Method: bpf_stats ({stats_mode}); values {args.values}; {args.rounds} rounds x "
          f"{args.events} getppid per "
          f"program; median [min–max]; ratios paired per round against `rezolus` with the same "
          f"number of histograms; {elapsed:.0f} s.")
    print()
    print("| candidate | hist/event | ns/event | ÷ rezolus (ns) | ÷ rezolus, net of floor | "
          "verified insns | ÷ rezolus | xlated insns | ÷ rezolus | counts ok |")
    print("|---|---:|---|---|---|---:|---:|---:|---:|---|")
    for row in rows:
        rv, rx = row["ratio_verified"], row["ratio_xlated"]
        print(f"| {row['candidate']} | {row['histograms']} | {spread(row['ns_per_event'])} | "
              f"{spread(row['ratio_ns'], '{:.2f}')}× | "
              f"{spread(row['ratio_ns_net_of_floor'], '{:.2f}')}× | {row['verified_insns']} | "
              f"{'-' if rv is None else f'{rv:.2f}×'} | {row['xlated_insns']} | "
              f"{'-' if rx is None else f'{rx:.2f}×'} | {'yes' if row['counts_ok'] else 'NO'} |")
    if sampler_rows:
        print()
        print("Hand-written samplers, as in the snapshot (hand) and with the emitted index "
              "swapped in (emitted):")
        print()
        print("| sampler | program | hand ns/event | emitted ns/event | ÷ hand (ns) | "
              "verified insns hand → emitted | xlated insns hand → emitted |")
        print("|---|---|---|---|---|---|---|")
        for row in sampler_rows:
            (vh, ve), (xh, xe) = row["verified_insns"], row["xlated_insns"]
            print(f"| {row['sampler']} | {row['program']} | {spread(row['hand_ns'])} | "
                  f"{spread(row['emitted_ns'])} | {spread(row['ratio_ns'], '{:.2f}')}× | "
                  f"{vh} → {ve} ({ve / vh:.2f}×) | {xh} → {xe} ({xe / xh:.2f}×) |")
    print()
    print("Candidates: " + "; ".join(f"`{c.key}`: {c.desc}" for c in [*CANDIDATES, FLOOR]) + ".")
    return 0 if all(r["counts_ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
