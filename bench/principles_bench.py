#!/usr/bin/env python3
"""Micro-benchmarks behind the sampler design principles.

Every BPF program in ``bench/programs`` is compiled with Rezolus' own clang
flags against the Rezolus BPF headers, loaded with ``rezolus_sampler/kernel/bpf.py``, attached
to ``tp_btf/sys_enter`` and driven by a C loop of ``getppid`` syscalls pinned
to CPU 0 (or to CPUs 0 and 1 at once for the contention cases).  The cost per
event is the kernel's own accounting: ``delta run_time_ns / delta run_cnt``
from ``bpf_prog_info`` with BPF run-time stats enabled.  Background syscalls
from other processes are counted too; that only changes the sample size.

Variants are interleaved (the start position rotates each round) and repeated;
the table reports the median and the min-max spread over rounds.

Usage::

    .venv/bin/python bench/principles_bench.py [--rounds N] [--events N] [--json]

Needs root and a kernel with BTF (tp_btf).  REZOLUS_DIR selects the Rezolus
checkout (default: ../shared/rezolus next to this repository).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rezolus_sampler.kernel import bpf  # noqa: E402

PROGRAMS = REPO / "bench" / "programs"
WIDTH = 8  # COUNTER_GROUP_WIDTH in the bank programs
MAX_CPUS = 1024

DRIVER_C = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: no syscall */
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* usage: driver CPU EVENTS START_AT_MONOTONIC_NS */
int main(int argc, char** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s CPU EVENTS START_AT_NS\n", argv[0]);
        return 2;
    }
    int cpu = atoi(argv[1]);
    long n = atol(argv[2]);
    long long start_at = atoll(argv[3]);
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0) {
        perror("sched_setaffinity");
        return 1;
    }
    while (now_ns() < start_at) {
    }
    long long t0 = now_ns();
    for (long i = 0; i < n; i++) {
        syscall(SYS_getppid);
    }
    long long t1 = now_ns();
    printf("%lld %lld\n", t0, t1);
    return 0;
}
"""


# --------------------------------------------------------------------------
# variants
# --------------------------------------------------------------------------


def _bank_slots(*slots: int) -> Callable[[bpf.BpfObject, int], int]:
    def count(obj: bpf.BpfObject, ncpus: int) -> int:
        view = bpf.mmap_u64_array(obj.map_fd("counters"), MAX_CPUS * WIDTH)
        try:
            return sum(bpf.read_bank_sum(view, WIDTH, s, ncpus) for s in slots)
        finally:
            mm = view.obj
            view.release()
            mm.close()

    return count


def _packed(obj: bpf.BpfObject, ncpus: int) -> int:
    view = bpf.mmap_u64_array(obj.map_fd("counters"), MAX_CPUS)
    try:
        return sum(view[:ncpus])
    finally:
        mm = view.obj
        view.release()
        mm.close()


def _shared(obj: bpf.BpfObject, ncpus: int) -> int:
    return obj.lookup_u64("counters", 0) or 0


def _hash_keys(*keys: int) -> Callable[[bpf.BpfObject, int], int]:
    def count(obj: bpf.BpfObject, ncpus: int) -> int:
        return sum(obj.lookup_u64("counters", k) or 0 for k in keys)

    return count


@dataclass
class Variant:
    key: str
    desc: str
    src: str | None  # None: nothing attached (baseline loop)
    cpus: int
    counters_per_event: int = 0
    count: Callable[[bpf.BpfObject, int], int] | None = None
    reference: bool = False  # extra row, not one of the briefed variants


VARIANTS = [
    Variant("base1", "nothing attached, 1 CPU (loop baseline)", None, 1, reference=True),
    Variant("a", "empty program (entry/exit floor)", "a_empty", 1),
    Variant("b", "1 counter, per-CPU padded bank", "b_bank_one", 1, 1, _bank_slots(0)),
    Variant("c", "2 counters, one program", "c_bank_two", 1, 2, _bank_slots(0, 1)),
    Variant("d", "2 counters, two programs on the hook", "d_bank_split", 1, 2, _bank_slots(0, 1)),
    Variant("e", "2 counters as HASH entries", "e_hash_two", 1, 2, _hash_keys(0, 1)),
    Variant("base2", "nothing attached, 2 CPUs (loop baseline)", None, 2, reference=True),
    Variant("f", "2 CPUs: padded per-CPU bank", "b_bank_one", 2, 1, _bank_slots(0)),
    Variant("g", "2 CPUs: per-CPU slots packed in one cacheline", "g_packed", 2, 1, _packed),
    Variant("h", "2 CPUs: one shared slot", "h_shared", 2, 1, _shared),
    Variant("i", "2 CPUs: one-key HASH map", "i_hash_one", 2, 1, _hash_keys(0)),
    Variant("g1", "1 CPU: packed slots (reference for g)", "g_packed", 1, 1, _packed, True),
    Variant("h1", "1 CPU: one shared slot (reference for h)", "h_shared", 1, 1, _shared, True),
    Variant("i1", "1 CPU: one-key HASH map (reference for i)", "i_hash_one", 1, 1, _hash_keys(0), True),
]


@dataclass
class Result:
    variant: Variant
    ns_per_event: list[float] = field(default_factory=list)
    loop_ns_per_call: list[float] = field(default_factory=list)
    overlap: list[float] = field(default_factory=list)
    events_seen: list[int] = field(default_factory=list)
    count_ok: list[bool] = field(default_factory=list)
    recursion_misses: int = 0
    insns: dict[str, dict[str, int]] = field(default_factory=dict)


# --------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------


def run_driver(driver: Path, cpus: int, events: int) -> tuple[float, float]:
    """Run the getppid loop on CPUs 0..cpus-1 at once.

    Returns (mean ns per syscall, overlap) where overlap is the fraction of the
    mean loop duration during which all loops ran concurrently (1.0 for 1 CPU)."""
    start_at = time.monotonic_ns() + 30_000_000  # let both processes get going
    procs = [
        subprocess.Popen([str(driver), str(cpu), str(events), str(start_at)], stdout=subprocess.PIPE, text=True)
        for cpu in range(cpus)
    ]
    spans = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"driver failed with exit {p.returncode}")
        t0, t1 = (int(x) for x in out.split())
        spans.append((t0, t1))
    mean_len = statistics.mean(t1 - t0 for t0, t1 in spans)
    overlap = max(0, min(t1 for _, t1 in spans) - max(t0 for t0, _ in spans)) / mean_len
    return mean_len / events, overlap


def measure(v: Variant, objs: dict[str, Path], driver: Path, events: int, ncpus: int, res: Result) -> None:
    if v.src is None:
        loop, overlap = run_driver(driver, v.cpus, events)
        res.loop_ns_per_call.append(loop)
        res.overlap.append(overlap)
        return
    with bpf.BpfObject.open(objs[v.src]) as obj:
        obj.load()
        names = obj.attach_all()
        count0 = v.count(obj, ncpus) if v.count else 0
        before = {n: obj.prog_info(n) for n in names}
        loop, overlap = run_driver(driver, v.cpus, events)
        after = {n: obj.prog_info(n) for n in names}
        count1 = v.count(obj, ncpus) if v.count else 0
    run_time = sum(after[n].run_time_ns - before[n].run_time_ns for n in names)
    runs = statistics.mean(after[n].run_cnt - before[n].run_cnt for n in names)
    res.ns_per_event.append(run_time / runs)
    res.loop_ns_per_call.append(loop)
    res.overlap.append(overlap)
    res.events_seen.append(int(runs))
    res.recursion_misses += sum(after[n].recursion_misses - before[n].recursion_misses for n in names)
    if v.count:
        res.count_ok.append(count1 - count0 >= v.counters_per_event * events * v.cpus)
    res.insns = {
        n: {"verified_insns": i.verified_insns, "xlated_insns": i.xlated_insns, "insn_cnt": i.insn_cnt, "jited_len": i.jited_len}
        for n, i in after.items()
    }


def userspace_reads(objs: dict[str, Path], reads: int, rounds: int) -> list[dict]:
    """ns per read of procfs files versus an mmapped 1024-CPU x 8-slot bank."""

    def parse_proc_stat() -> int:
        with open("/proc/stat") as f:
            total = 0
            for line in f.read().splitlines():
                if line.startswith("cpu"):
                    total += sum(int(x) for x in line.split()[1:])
            return total

    def parse_net_dev() -> int:
        with open("/proc/net/dev") as f:
            total = 0
            for line in f.read().splitlines()[2:]:
                _, _, rest = line.partition(":")
                total += sum(int(x) for x in rest.split())
            return total

    ncpus = bpf.possible_cpus()
    results = []
    with bpf.BpfObject.open(objs["b_bank_one"]) as obj:
        obj.load()  # map only; nothing attached
        view = bpf.mmap_u64_array(obj.map_fd("counters"), MAX_CPUS * WIDTH)
        cases = [
            ("j.procfs_stat", "read + parse /proc/stat (all cpu lines)", parse_proc_stat),
            ("j.procfs_netdev", "read + parse /proc/net/dev", parse_net_dev),
            ("j.mmap_1slot", f"mmap bank: 1 slot summed over {MAX_CPUS} CPUs",
             lambda: bpf.read_bank_sum(view, WIDTH, 0, MAX_CPUS)),
            ("j.mmap_8slots", f"mmap bank: all {WIDTH} slots summed over {MAX_CPUS} CPUs",
             lambda: [bpf.read_bank_sum(view, WIDTH, s, MAX_CPUS) for s in range(WIDTH)]),
            ("j.mmap_8slots_possible", f"mmap bank: all {WIDTH} slots over possible CPUs ({ncpus})",
             lambda: [bpf.read_bank_sum(view, WIDTH, s, ncpus) for s in range(WIDTH)]),
        ]
        samples: dict[str, list[float]] = {k: [] for k, _, _ in cases}
        for r in range(rounds):
            for k, _, fn in cases[r % len(cases):] + cases[: r % len(cases)]:
                fn()
                t0 = time.perf_counter_ns()
                for _ in range(reads):
                    fn()
                samples[k].append((time.perf_counter_ns() - t0) / reads)
        for k, desc, _ in cases:
            results.append({"key": k, "desc": desc, "ns_per_read": samples[k]})
        mm = view.obj
        view.release()
        mm.close()
    return results


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "kernel": platform.release(),
        "arch": platform.machine(),
        "nproc": str(os.cpu_count()),
        "possible_cpus": str(bpf.possible_cpus()),
        "cpu_model": model,
        "clang": subprocess.run(["clang", "--version"], capture_output=True, text=True).stdout.splitlines()[0],
        "python": platform.python_version(),
    }


def spread(xs: list[float], fmt: str = "{:.1f}") -> str:
    if not xs:
        return "-"
    return f"{fmt.format(statistics.median(xs))} [{fmt.format(min(xs))}–{fmt.format(max(xs))}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="rounds over all variants (default 5)")
    ap.add_argument("--events", type=int, default=1_000_000, help="getppid calls per CPU per run (default 1e6)")
    ap.add_argument("--reads", type=int, default=2000, help="userspace reads per round for (j) (default 2000)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = ap.parse_args()

    ok, why = bpf.bpf_available()
    if not ok:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    if (os.cpu_count() or 1) < 2:
        print("need at least 2 CPUs for the contention variants", file=sys.stderr)
        return 2
    rezolus = Path(os.environ.get("REZOLUS_DIR", REPO / ".." / "shared" / "rezolus")).resolve()
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/principles_bench.py", *sys.argv[1:]])
    ncpus = bpf.possible_cpus()
    started = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="principles-bench-") as tmp, bpf.cleanup_on_signals():
        tmpd = Path(tmp)
        driver = tmpd / "driver"
        (tmpd / "driver.c").write_text(DRIVER_C)
        subprocess.run(["cc", "-O2", "-o", str(driver), str(tmpd / "driver.c")], check=True)
        objs: dict[str, Path] = {}
        for src in sorted({v.src for v in VARIANTS if v.src}):
            objs[src] = tmpd / f"{src}.bpf.o"
            bpf.compile_bpf(PROGRAMS / f"{src}.bpf.c", objs[src], rezolus)

        results = {v.key: Result(v) for v in VARIANTS}
        with bpf.bpf_stats_enabled() as stats_mode:
            run_driver(driver, 2, max(1, args.events // 4))  # warm-up
            for r in range(args.rounds):
                order = VARIANTS[r % len(VARIANTS):] + VARIANTS[: r % len(VARIANTS)]
                for v in order:
                    measure(v, objs, driver, args.events, ncpus, results[v.key])
        user = userspace_reads(objs, args.reads, args.rounds)

    elapsed = time.monotonic() - started
    base = {1: statistics.median(results["base1"].loop_ns_per_call), 2: statistics.median(results["base2"].loop_ns_per_call)}
    info = machine()

    if args.json:
        out = {
            "command": command,
            "machine": info,
            "rezolus_dir": str(rezolus),
            "clang_args": bpf.clang_args(rezolus, "x86_64" if platform.machine() == "x86_64" else "aarch64"),
            "stats_mode": stats_mode,
            "rounds": args.rounds,
            "events_per_cpu": args.events,
            "elapsed_s": round(elapsed, 1),
            "variants": [
                {
                    "key": res.variant.key,
                    "desc": res.variant.desc,
                    "program": res.variant.src,
                    "cpus": res.variant.cpus,
                    "reference": res.variant.reference,
                    "ns_per_event": res.ns_per_event,
                    "ns_per_event_median": statistics.median(res.ns_per_event) if res.ns_per_event else None,
                    "loop_ns_per_syscall": res.loop_ns_per_call,
                    "loop_delta_vs_baseline_ns": statistics.median(res.loop_ns_per_call) - base[res.variant.cpus],
                    "events_seen": res.events_seen,
                    "overlap": res.overlap,
                    "counts_ok": all(res.count_ok) if res.count_ok else None,
                    "recursion_misses": res.recursion_misses,
                    "programs": res.insns,
                }
                for res in results.values()
            ],
            "userspace_reads": user,
        }
        print(json.dumps(out, indent=2))
        return 0

    print(f"Command: `{command}`  ")
    print(f"Machine: Linux {info['kernel']} {info['arch']}, nproc={info['nproc']}, possible CPUs={info['possible_cpus']}, "
          f"CPU: {info['cpu_model']}; {info['clang']}  ")
    print(f"Method: kernel BPF stats via {'BPF_ENABLE_STATS fd' if stats_mode == 'fd' else 'sysctl'}; "
          f"{args.rounds} interleaved rounds x {args.events} getppid/CPU; median [min–max]; {elapsed:.0f} s total.")
    print()
    print("| var | what | CPUs | BPF ns/event | loop ns/syscall | Δ loop vs none | overlap | verified insns | xlated insns | insn_cnt | counts ok |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for res in results.values():
        v = res.variant
        progs = res.insns.values()
        fmt_ins = lambda k: "+".join(str(p[k]) for p in progs) if progs else "-"  # noqa: E731
        delta = statistics.median(res.loop_ns_per_call) - base[v.cpus]
        ok = "-" if not res.count_ok else ("yes" if all(res.count_ok) else "NO")
        label = f"{v.key}*" if v.reference else v.key
        print(f"| {label} | {v.desc} | {v.cpus} | {spread(res.ns_per_event)} | {spread(res.loop_ns_per_call)} | "
              f"{'-' if v.src is None else f'{delta:+.1f}'} | {spread(res.overlap, '{:.2f}') if v.cpus > 1 else '-'} | {fmt_ins('verified_insns')} | {fmt_ins('xlated_insns')} | "
              f"{fmt_ins('insn_cnt')} | {ok} |")
    print()
    print("`*` reference rows beyond the briefed variants. BPF ns/event = Δrun_time_ns/Δrun_cnt summed over the "
          "variant's programs (in-program time as accounted by the kernel with stats on, bracketed by its two clock "
          "reads; excludes the raw-tracepoint dispatch around the program). "
          "Loop ns/syscall = wall time of the pinned getppid loop / calls (stats on), mean over driving CPUs; "
          "Δ vs none also includes the syscall-tracepoint slow path that any attached sys_enter program switches on. "
          "Overlap = fraction of the loop time during which both CPUs' loops ran at once (contention rows).")
    print()
    print(f"Userspace read cost (Python {info['python']}, time.perf_counter_ns over {args.reads} reads x "
          f"{args.rounds} rounds; this is the reader's side, not the BPF side):")
    print()
    print("| case | what | ns/read |")
    print("|---|---|---|")
    for u in user:
        print(f"| {u['key']} | {u['desc']} | {spread(u['ns_per_read'], '{:.0f}')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
