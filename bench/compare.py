#!/usr/bin/env python3
"""Generated versus hand-written Rezolus samplers, measured in the same run.

Renders the reproduction specs (``examples/network_traffic.yml``,
``examples/cpu_tlb_flush_reasons.yml``, ``examples/blockio_requests_counters.yml``,
``bench/compare/syscall_multi.yml`` and the histogram examples
``examples/blockio_request_sizes.yml`` and ``examples/syscall_total_latency.yml``)
into a scratch copy of the Rezolus snapshot with ``tests/support.py``, compiles the generated ``mod.bpf.c`` files,
the hand-written ones straight from the snapshot, and the hand-patched variants
in ``bench/compare/*.bpf.c`` with Rezolus' own clang flags, then loads, attaches
and drives each one under the same workload, interleaved (the order rotates
every round) and repeated.

The ``v0 + (x)`` rows are hand-patched copies of the template's first generated
shape (one ``array_add`` lookup per counter, CPU id read first, ``BPF_CORE_READ``
in both twins) with one candidate change each. They are how (a) one lookup per
bank, (b) direct reads in the tp_btf twin and (d) a late CPU id were chosen; the
template now generates (a), (b) and (d), so ``gen`` rows include them and the
``v0`` rows remain as the record of each change's effect. (c) was not adopted.

Cost per event is the kernel's own accounting (BPF run-time stats):
``delta run_time_ns / delta run_cnt`` per program.  Instruction counts are
``verified_insns`` and ``xlated_insns`` from ``bpf_prog_info``.  Every run also
reads the variant's counters (or histogram buckets) and checks them against the
workload.

Histogram cases, each against the hand-written Rezolus sampler doing that job
(``hand``) and against that sampler's code cut down to the same work as the
generated one (``hand-trim``, ``bench/compare/blockio_sizes_trimmed.bpf.c`` and
``syscall_latency_total.bpf.c``):

* request sizes: the generated ``blockio_request_sizes`` versus
  ``blockio/requests`` (whose size histograms share the program with its
  counters and error classes), both twins; n O_DIRECT writes of 3584 B and n of
  19456 B, which must land exactly n in each size's bucket of the write map;
* system call latency: the generated ``syscall_total_latency`` (one
  distribution) versus ``syscall/latency`` (16 per-family distributions picked
  through ``syscall_lut``, filled here for the sleep calls as Rezolus'
  ``syscall_lut()`` would; its maps are summed bucket-wise into the one total
  distribution); getppid() calls and a few 1 ms sleeps, which must all be
  recorded, the sleeps at or above 1 ms and the p50 a fast call's latency.

Workloads (the process is pinned to CPU 0; children inherit it):

* network: loopback UDP datagrams (send one, receive it);
* tlb_flush: mmap + touch + munmap of one anonymous page (a local MM
  shootdown each) from a small C driver;
* blockio: O_DIRECT|O_SYNC 4 KiB writes to a loop device;
* syscall multi-counter: getppid() from the C driver;
* request sizes: O_DIRECT|O_SYNC writes of 3584 B and 19456 B to another loop
  device, over a file in tmpfs (the proof command's choice: no disk requests of
  the same sizes);
* syscall latency: getppid() then 1 ms nanosleep()s from the C driver.

Usage::

    .venv/bin/python bench/compare.py [--rounds N] [--events N] [--json]

``--events`` is the getppid count per run; the other workloads scale with it
(UDP /25, TLB /10, block /500, two-size block /1000 writes of each size,
latency /5 getppid with 20 sleeps).  Needs root, BTF and losetup.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mmap
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rezolus_sampler.kernel import bpf  # noqa: E402
from rezolus_sampler.kernel.histogram import REZOLUS, quantiles  # noqa: E402
from rezolus_sampler.kernel.prove import _backing_dir, host_arch, udp_loopback  # noqa: E402

HERE = REPO / "bench" / "compare"
MAX_CPUS = 1024
WIDTH = 8  # every bank compared here is 8 u64 wide
SYS_GETPPID = {"x86_64": 110, "aarch64": 173}.get(platform.machine(), 110)

DRIVER_C = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* usage: driver getppid|tlb N, or driver lat N K NS (N getppid, then K sleeps of NS ns) */
int main(int argc, char** argv) {
    if (argc != 3 && !(argc == 5 && !strcmp(argv[1], "lat"))) return 2;
    long n = atol(argv[2]);
    if (!strcmp(argv[1], "lat")) {
        long k = atol(argv[3]), ns = atol(argv[4]);
        struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
        for (long i = 0; i < n; i++) syscall(SYS_getppid);
        for (long i = 0; i < k; i++) nanosleep(&ts, NULL);
    } else if (!strcmp(argv[1], "getppid")) {
        for (long i = 0; i < n; i++) syscall(SYS_getppid);
    } else if (!strcmp(argv[1], "tlb")) {
        for (long i = 0; i < n; i++) {
            volatile char* p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) { perror("mmap"); return 1; }
            p[0] = 1;                 /* fault the page in: munmap must flush it */
            munmap((void*)p, 4096);   /* one tlb_flush (local MM shootdown) */
        }
    } else {
        return 2;
    }
    return 0;
}
"""


# --------------------------------------------------------------------------
# workloads
# --------------------------------------------------------------------------


@contextlib.contextmanager
def block_workload(sizes: tuple[int, ...] = (4096,), span: int = 64 << 20,
                   backing_dir: str = "/var/tmp") -> Iterator[Callable[[int], None]]:
    """O_DIRECT|O_SYNC writes to a loop device over a sparse file in `backing_dir` (set
    up once): run(n) writes n of each size, one size after the other. A file on a
    disk filesystem adds that disk's requests for the same writes (same sizes);
    on tmpfs the loop device's requests are the only ones."""
    if shutil.which("losetup") is None:
        raise RuntimeError("block workload needs losetup")
    buf = mmap.mmap(-1, max(sizes))  # page aligned, as O_DIRECT wants
    buf.write(b"\x5a" * max(sizes))
    with tempfile.TemporaryDirectory(prefix="compare-block-", dir=backing_dir) as tmp:
        backing = Path(tmp) / "disk.img"
        with open(backing, "wb") as f:
            f.truncate(span)
        proc = subprocess.run(["losetup", "--find", "--show", "--direct-io=on", str(backing)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            proc = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"losetup failed: {proc.stderr.strip()}")
        device = proc.stdout.strip()
        try:
            if shutil.which("udevadm"):
                subprocess.run(["udevadm", "settle", "--timeout=5"], capture_output=True)
            fd = os.open(device, os.O_WRONLY | os.O_DIRECT | os.O_SYNC)
            try:
                def run(n: int) -> None:
                    offset = 0
                    for size in sizes:
                        chunk = memoryview(buf)[:size]
                        try:
                            for _ in range(n):
                                if offset + size > span:
                                    offset = 0
                                if os.pwrite(fd, chunk, offset) != size:
                                    raise RuntimeError("block workload: short write")
                                offset += size
                        finally:
                            chunk.release()

                yield run
            finally:
                os.close(fd)
        finally:
            subprocess.run(["losetup", "--detach", device], capture_output=True)


def driver_workload(driver: Path, mode: str, *extra: int) -> Callable[[int], None]:
    def run(n: int) -> None:
        subprocess.run([str(driver), mode, str(n), *map(str, extra)], check=True)

    return run


# --------------------------------------------------------------------------
# variants
# --------------------------------------------------------------------------

Reader = Callable[[bpf.BpfObject], list[int]]


def bank_reader(map_name: str) -> Reader:
    """Per-slot sums over CPUs of an 8-wide per-CPU bank (u64 or struct layout:
    the mmap bytes are the same)."""

    def read(obj: bpf.BpfObject) -> list[int]:
        ncpus = bpf.possible_cpus()
        view = bpf.mmap_u64_array(obj.map_fd(map_name), MAX_CPUS * WIDTH)
        try:
            return [bpf.read_bank_sum(view, WIDTH, s, ncpus) for s in range(WIDTH)]
        finally:
            mm = view.obj
            view.release()
            mm.close()

    return read


def hist_reader(maps: list[str], total: bool = False) -> Reader:
    """The buckets of histogram maps (RwLockHistogram::new(3, 64): 496 u64 each),
    one map after the other, or (total) summed bucket-wise into one distribution."""

    def read(obj: bpf.BpfObject) -> list[int]:
        out: list[int] = []
        for name in maps:
            view = bpf.mmap_u64_array(obj.map_fd(name), REZOLUS.total_buckets)
            try:
                out += list(view)
            finally:
                mm = view.obj
                view.release()
                mm.close()
        if total:
            n = REZOLUS.total_buckets
            out = [sum(out[i + m * n] for m in range(len(maps))) for i in range(n)]
        return out

    return read


def hash_reader(map_name: str) -> Reader:
    def read(obj: bpf.BpfObject) -> list[int]:
        return [obj.lookup_u64(map_name, k) or 0 for k in range(WIDTH)]

    return read


@dataclass
class Variant:
    group: str
    key: str
    role: str  # hand | hand-trim | gen | cand | floor | alt
    desc: str
    obj: str  # key into the compiled objects
    progs: list[str]  # programs loaded and attached; every other one stays unloaded
    reader: Reader | None = None
    aggregate: bool = False  # one row for all programs (several programs on one hook)
    setup: Callable[[bpf.BpfObject], None] | None = None  # fills maps userspace fills, before attach


@dataclass
class Group:
    key: str
    title: str
    workload: str  # udp | tlb | block | getppid
    scale: float  # workload count = events * scale
    ref: str  # variant key the ratios are taken against
    check: Callable[[list[int], int], bool]  # (slot deltas, workload count) -> counts plausible
    expect: str  # what check() asserts, for the table notes
    describe: Callable[[list[int], int], str] | None = None  # histogram contents, for the report


UDP_SIZE = 512
BLOCK_SIZE = 4096
# Write sizes whose buckets hold no multiple of 4096 (3584 in [3584, 3839], 19456 in
# [18432, 20479]): the machine's own 4 KiB-block writes cannot land in them.
HIST_SIZES = (3584, 19456)
SLEEP_NS, N_SLEEPS = 1_000_000, 20
HB = REZOLUS.total_buckets
OPS = ("read", "write", "flush", "discard")
# nanosleep and clock_nanosleep: Rezolus' syscall_lut() puts both in family 6 (sleep)
SLEEP_SYSCALLS = {"x86_64": (35, 230), "aarch64": (101, 115)}.get(host_arch(), ())
SLEEP_FAMILY = 6
LATENCY_MAPS = [f"{f}_latency" for f in (
    "other", "read", "write", "poll", "lock", "time", "sleep", "socket", "yield", "filesystem",
    "memory", "process", "query", "ipc", "timer", "event")]


def _bounds(i: int) -> str:
    lo, hi = REZOLUS.index_to_lower_bound(i), REZOLUS.index_to_upper_bound(i)
    return str(lo) if lo == hi else f"{lo}..={hi}"


def sizes_ok(d: list[int], n: int) -> bool:
    """Exactly n writes in each size's bucket of the write map (maps in OPS order)."""
    write = d[HB:2 * HB]
    return all(write[REZOLUS.value_to_index(s)] == n for s in HIST_SIZES)


def sizes_text(d: list[int], n: int) -> str:
    parts = []
    for k, op in enumerate(OPS):
        m = d[k * HB:(k + 1) * HB]
        if op == "write":
            inside = ", ".join(f"[{_bounds(REZOLUS.value_to_index(s))}]: {m[REZOLUS.value_to_index(s)]}"
                               for s in HIST_SIZES)
            parts.append(f"write count {sum(m)} ({inside}; expected {n} each)")
        else:
            parts.append(f"{op} {sum(m)}")
    return "; ".join(parts)


def _sleep_buckets(d: list[int]) -> tuple[int, int]:
    """(recorded at or above the sleep, recorded within the relative error above it)."""
    at_least = within = 0
    limit = SLEEP_NS * (1 + REZOLUS.relative_error)
    for i, c in enumerate(d):
        if c and REZOLUS.index_to_upper_bound(i) >= SLEEP_NS:
            at_least += c
            within += c if REZOLUS.index_to_lower_bound(i) <= limit else 0
    return at_least, within


def latency_ok(d: list[int], n: int) -> bool:
    """Every call recorded, every sleep at or above its duration (most within the
    histogram's relative error), and getppid's latency as the median."""
    q = quantiles(REZOLUS, d, [0.5])
    at_least, within = _sleep_buckets(d)
    return (sum(d) >= n + N_SLEEPS and at_least >= N_SLEEPS and within >= N_SLEEPS // 2
            and q is not None and q.entries[0.5].upper < 100_000)


def latency_text(d: list[int], n: int) -> str:
    q = quantiles(REZOLUS, d, [0.5, 0.99])
    at_least, within = _sleep_buckets(d)
    p50 = _bounds(q.entries[0.5].index) if q else "-"
    return (f"count {sum(d)} (>= {n} getppid + {N_SLEEPS} sleeps), p50 {p50} ns, "
            f"{at_least} at >= {SLEEP_NS} ns of which {within} within "
            f"{REZOLUS.relative_error:.1%} above it")


def fill_sleep_lut(obj: bpf.BpfObject) -> None:
    for nr in SLEEP_SYSCALLS:
        obj.update_u64("syscall_lut", nr, SLEEP_FAMILY)

GROUPS = [
    Group("traffic", "network/traffic (raw_tp, loopback UDP)", "udp", 1 / 25, "hand",
          lambda d, n: d[2] >= n and d[3] >= n and d[0] >= n * UDP_SIZE and d[1] >= n * UDP_SIZE,
          "rx/tx packets >= n and rx/tx bytes >= n x 512"),
    Group("tlb", "cpu/tlb_flush (raw_tp, mmap/touch/munmap)", "tlb", 1 / 10, "hand-trim",
          lambda d, n: d[3] >= n, "local_mm_shootdown (slot 3) >= n"),
    Group("blockio", "blockio/requests counters (tp_btf twin, O_DIRECT writes to loop)", "block", 1 / 500,
          "hand-trim", lambda d, n: d[1] >= n and d[5] >= n * BLOCK_SIZE,
          "write ops (slot 1) >= n and write bytes (slot 5) >= n x 4096"),
    Group("multi", "3 counters at raw_syscalls:sys_enter (tp_btf, getppid)", "getppid", 1.0, "gen",
          lambda d, n: d[0] >= n and sum(d[1:5]) >= n and d[5] >= n * SYS_GETPPID,
          "entries >= n, sum of lanes >= n, ids >= n x nr(getppid)"),
    Group("hsizes", "blockio request-size histograms (O_DIRECT writes of 3584 B and 19456 B to loop)",
          "block2", 1 / 1000, "hand", sizes_ok,
          "exactly n in the 3584 B bucket and n in the 19456 B bucket of the write histogram",
          sizes_text),
    Group("hlat", "syscall latency histograms (classic raw_syscalls tracepoints, getppid + 1 ms sleeps)",
          "lat", 1 / 5, "hand", latency_ok,
          f"count >= n + {N_SLEEPS}, >= {N_SLEEPS} at >= 1 ms (half within the relative error), p50 < 100 us",
          latency_text),
]

RX, TX = "netif_receive_skb", "net_dev_start_xmit"
BTF, RAW = "block_rq_complete_btf", "block_rq_complete_raw"

VARIANTS = [
    # network/traffic: the generated program does exactly the hand-written work
    Variant("traffic", "hand", "hand", "hand-written (snapshot)", "hand_traffic", [RX, TX], bank_reader("counters")),
    Variant("traffic", "gen", "gen", "generated (examples/network_traffic.yml)", "gen_traffic", [RX, TX],
            bank_reader("counters")),
    Variant("traffic", "gen+d", "cand", "v0 + (d) CPU id read after the event fields", "traffic_late",
            [RX, TX], bank_reader("counters")),
    Variant("traffic", "gen+a", "cand", "v0 + (a) one lookup per bank", "traffic_bank", [RX, TX],
            bank_reader("counters")),
    # cpu/tlb_flush
    Variant("tlb", "hand", "hand", "hand-written (snapshot; + per-cgroup counting)", "hand_tlb", ["tlb_flush"],
            bank_reader("events")),
    Variant("tlb", "hand-trim", "hand-trim", "hand-written, cgroup part removed", "tlb_flush_trimmed",
            ["tlb_flush"], bank_reader("events")),
    Variant("tlb", "gen", "gen", "generated (examples/cpu_tlb_flush_reasons.yml)", "gen_tlb", ["tlb_flush"],
            bank_reader("events")),
    Variant("tlb", "gen+a", "cand", "v0 + (a) one lookup per bank", "tlb_flush_bank", ["tlb_flush"],
            bank_reader("events")),
    Variant("tlb", "gen+c", "cand", "v0 + (c) index masked, no compare", "tlb_flush_mask", ["tlb_flush"],
            bank_reader("events")),
    # blockio/requests counters, tp_btf twin (what Rezolus loads on BTF kernels) and raw_tp twin
    Variant("blockio", "hand", "hand", "hand-written (snapshot; + size histograms, error classes)",
            "hand_blockio", [BTF], bank_reader("counters")),
    Variant("blockio", "hand-trim", "hand-trim", "hand-written, counters only", "blockio_trimmed", [BTF],
            bank_reader("counters")),
    Variant("blockio", "gen", "gen", "generated (examples/blockio_requests_counters.yml)", "gen_blockio", [BTF],
            bank_reader("counters")),
    Variant("blockio", "gen+d", "cand", "v0 + (d) CPU id read inside the guard", "blockio_late", [BTF],
            bank_reader("counters")),
    Variant("blockio", "gen+a", "cand", "v0 + (a) one lookup per bank", "blockio_bank", [BTF],
            bank_reader("counters")),
    Variant("blockio", "gen+b", "cand", "v0 + (b) direct rq->cmd_flags read", "blockio_direct", [BTF],
            bank_reader("counters")),
    Variant("blockio", "gen+ab", "cand", "v0 + (a) + (b)", "blockio_bank_direct", [BTF],
            bank_reader("counters")),
    Variant("blockio", "hand-trim/raw", "hand-trim", "hand-written counters only, raw_tp twin", "blockio_trimmed",
            [RAW], bank_reader("counters")),
    Variant("blockio", "gen/raw", "gen", "generated, raw_tp twin", "gen_blockio", [RAW], bank_reader("counters")),
    Variant("blockio", "gen+d/raw", "cand", "v0 + (d), raw_tp twin", "blockio_late", [RAW],
            bank_reader("counters")),
    Variant("blockio", "gen+a/raw", "cand", "v0 + (a), raw_tp twin", "blockio_bank", [RAW],
            bank_reader("counters")),
    # multi-counter spec at sys_enter
    Variant("multi", "floor", "floor", "empty program on the hook", "multi_empty", ["sys_enter_btf"],
            aggregate=True),
    Variant("multi", "gen", "gen", "generated: 3 counters, one program", "gen_multi", ["sys_enter_btf"],
            bank_reader("counters"), aggregate=True),
    Variant("multi", "split", "alt", "one program per counter (3 on the hook)", "multi_split",
            ["sys_enter_entries", "sys_enter_lanes", "sys_enter_ids"], bank_reader("counters"), aggregate=True),
    Variant("multi", "hash", "alt", "one program, HASH map keyed by slot", "multi_hash", ["sys_enter_btf"],
            hash_reader("counters"), aggregate=True),
    Variant("multi", "gen+a", "cand", "v0 + (a) one lookup per bank", "multi_bank", ["sys_enter_btf"],
            bank_reader("counters"), aggregate=True),
    # request-size histograms: tp_btf twins, then raw_tp twins
    Variant("hsizes", "hand", "hand", "hand-written blockio/requests (snapshot; + counters, error classes)",
            "hand_blockio", [BTF], hist_reader([f"{op}_size" for op in OPS])),
    Variant("hsizes", "hand-trim", "hand-trim", "hand-written size histograms only", "blockio_sizes_trimmed",
            [BTF], hist_reader([f"{op}_size" for op in OPS])),
    Variant("hsizes", "gen", "gen", "generated (examples/blockio_request_sizes.yml)", "gen_hsizes", [BTF],
            hist_reader([f"bytes_{op}" for op in OPS])),
    Variant("hsizes", "hand/raw", "hand", "hand-written blockio/requests, raw_tp twin", "hand_blockio", [RAW],
            hist_reader([f"{op}_size" for op in OPS])),
    Variant("hsizes", "hand-trim/raw", "hand-trim", "hand-written size histograms only, raw_tp twin",
            "blockio_sizes_trimmed", [RAW], hist_reader([f"{op}_size" for op in OPS])),
    Variant("hsizes", "gen/raw", "gen", "generated, raw_tp twin", "gen_hsizes", [RAW],
            hist_reader([f"bytes_{op}" for op in OPS])),
    # system call latency: two classic tracepoint programs each
    Variant("hlat", "hand", "hand", "hand-written syscall/latency (snapshot; 16 families via syscall_lut)",
            "hand_hlat", ["sys_enter", "sys_exit"], hist_reader(LATENCY_MAPS, total=True), setup=fill_sleep_lut),
    Variant("hlat", "hand-trim", "hand-trim", "hand-written timing code, one histogram", "syscall_latency_total",
            ["sys_enter", "sys_exit"], hist_reader(["total_latency"])),
    Variant("hlat", "gen", "gen", "generated (examples/syscall_total_latency.yml)", "gen_hlat",
            ["sys_enter", "sys_exit"], hist_reader(["syscall_total_latency"])),
]

# rendered specs: (answers file, overwrite, objects key, path of mod.bpf.c under the tree)
SPECS = [
    (REPO / "examples" / "network_traffic.yml", True, "gen_traffic"),
    (REPO / "examples" / "cpu_tlb_flush_reasons.yml", False, "gen_tlb"),
    (REPO / "examples" / "blockio_requests_counters.yml", False, "gen_blockio"),
    (HERE / "syscall_multi.yml", False, "gen_multi"),
    (REPO / "examples" / "blockio_request_sizes.yml", False, "gen_hsizes"),
    (REPO / "examples" / "syscall_total_latency.yml", False, "gen_hlat"),
]
# the specs a template version from before histograms can render (counters only)
BEFORE_KEYS = {"gen_traffic", "gen_tlb", "gen_blockio", "gen_multi"}
HAND = {
    "hand_traffic": "network/linux/traffic",
    "hand_tlb": "cpu/linux/tlb_flush",
    "hand_blockio": "blockio/linux/requests",
    "hand_hlat": "syscall/linux/latency",
}


# --------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------


@dataclass
class Sample:
    run_time: dict[str, int]
    run_cnt: dict[str, int]
    ok: bool
    deltas: list[int]


@dataclass
class Result:
    variant: Variant
    samples: list[Sample] = field(default_factory=list)
    insns: dict[str, dict[str, int]] = field(default_factory=dict)
    sizes: list[int] = field(default_factory=list)  # workload count per run

    def ns(self, prog: str | None) -> list[float]:
        """ns/event per round for one program, or for all programs per hook event."""
        out = []
        for s in self.samples:
            if prog is None:
                runs = statistics.mean(s.run_cnt.values())
                out.append(sum(s.run_time.values()) / runs if runs else float("nan"))
            else:
                c = s.run_cnt[prog]
                out.append(s.run_time[prog] / c if c else float("nan"))
        return out


def measure(v: Variant, objs: dict[str, Path], run: Callable[[int], None], n: int, group: Group, res: Result) -> None:
    with bpf.BpfObject.open(objs[v.obj]) as obj:
        for name in obj.program_names():
            obj.set_autoload(name, name in v.progs)
        obj.load()
        if v.setup:
            v.setup(obj)
        names = obj.attach_all()
        assert sorted(names) == sorted(v.progs), (names, v.progs)
        c0 = v.reader(obj) if v.reader else None
        before = {p: obj.prog_info(p) for p in names}
        run(n)
        after = {p: obj.prog_info(p) for p in names}
        c1 = v.reader(obj) if v.reader else None
    deltas = [b - a for a, b in zip(c0, c1)] if c0 is not None else []
    res.samples.append(Sample(
        run_time={p: after[p].run_time_ns - before[p].run_time_ns for p in names},
        run_cnt={p: after[p].run_cnt - before[p].run_cnt for p in names},
        ok=group.check(deltas, n) if v.reader else True,
        deltas=deltas,
    ))
    res.sizes.append(n)
    res.insns = {p: {"verified_insns": i.verified_insns, "xlated_insns": i.xlated_insns, "jited_len": i.jited_len}
                 for p, i in after.items()}


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Discard fd 1 and 2 (the template's tasks print from subprocesses)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def build_before(tmp: Path, ref: str) -> dict[str, Path]:
    """The counter specs rendered by the template as it was at git revision `ref`
    (copier.yml, template/ and hooks/ of that commit, run by the real copier
    command in a scratch tree) and compiled: objects key -> object. A spec that
    version cannot render is skipped, with a note on stderr."""
    sys.path.insert(0, str(REPO / "tests"))
    from support import load_answers, make_tree, sampler_path  # noqa: E402

    archive = subprocess.run(["git", "archive", ref, "copier.yml", "template", "hooks"], cwd=REPO,
                             capture_output=True, check=True)
    template = tmp / "before-template"
    template.mkdir()
    subprocess.run(["tar", "-x", "-C", str(template)], input=archive.stdout, check=True)
    objs: dict[str, Path] = {}
    for spec, overwrite, key in SPECS:
        if key not in BEFORE_KEYS:
            continue
        tree = make_tree(tmp / f"before-{key}")
        proc = subprocess.run([sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--quiet",
                               *(["--overwrite"] if overwrite else []),
                               "--data-file", str(spec), str(template), "."], cwd=tree,
                              capture_output=True, text=True)
        if proc.returncode:
            print(f"{ref} cannot render {spec.name}: {proc.stderr.strip()[-300:]}", file=sys.stderr)
            continue
        src = sampler_path(tree, load_answers(spec)) / "mod.bpf.c"
        objs[f"before_{key}"] = tmp / "obj" / f"before_{key}.bpf.o"
        bpf.compile_bpf(src, objs[f"before_{key}"], tree)
    return objs


def before_variants(ref: str, objs: dict[str, Path]) -> list[Variant]:
    """A `before` row beside every `gen` row whose spec `ref` rendered."""
    out = []
    for v in VARIANTS:
        if v.role == "gen" and f"before_{v.obj}" in objs:
            key = "before/raw" if v.key.endswith("/raw") else "before"
            out.append(Variant(v.group, key, "before", f"generated by the template at {ref}",
                               f"before_{v.obj}", v.progs, v.reader, v.aggregate, v.setup))
    return out


def build(tmp: Path, rezolus: Path) -> dict[str, Path]:
    """Render the specs into a scratch tree and compile every object."""
    sys.path.insert(0, str(REPO / "tests"))
    from support import load_answers, make_tree, render, sampler_path  # noqa: E402

    tree = make_tree(tmp / "tree")
    objs: dict[str, Path] = {}
    sources: dict[str, tuple[Path, Path]] = {}
    with silenced(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for spec, overwrite, key in SPECS:
            answers = load_answers(spec)
            render(tree, answers, overwrite=overwrite)
            sources[key] = (sampler_path(tree, answers) / "mod.bpf.c", tree)
    for key, rel in HAND.items():
        sources[key] = (rezolus / "src" / "agent" / "samplers" / rel / "mod.bpf.c", rezolus)
    for src in sorted(HERE.glob("*.bpf.c")):
        sources[src.name.removesuffix(".bpf.c")] = (src, rezolus)
    for key, (src, root) in sources.items():
        objs[key] = tmp / "obj" / f"{key}.bpf.o"
        bpf.compile_bpf(src, objs[key], root)
    return objs


# --------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------


def med(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def spread(xs: list[float], fmt: str = "{:.1f}") -> str:
    xs = [x for x in xs if x == x]
    if not xs:
        return "-"
    return f"{fmt.format(statistics.median(xs))} [{fmt.format(min(xs))}–{fmt.format(max(xs))}]"


def rows_for(res: Result) -> list[tuple[str, str | None]]:
    """(row label, program or None for the aggregate) for a variant."""
    if res.variant.aggregate:
        return [("sys_enter (all programs)", None)]
    return [(p, p) for p in res.variant.progs]


def insn_sum(res: Result, prog: str | None, key: str) -> int:
    if prog is None:
        return sum(i[key] for i in res.insns.values())
    return res.insns[prog][key]


def build_rows(results: dict[tuple[str, str], Result]) -> list[dict]:
    rows = []
    for g in GROUPS:
        ref_res = results[(g.key, g.ref)]
        gen_keys = {"gen", "gen/raw"}
        for (gk, vk), res in results.items():
            if gk != g.key:
                continue
            v = res.variant
            # the raw_tp twin rows compare against the raw_tp twin rows
            raw = vk.endswith("/raw")
            ref = results.get((g.key, g.ref + "/raw")) if raw else ref_res
            gen = results.get((g.key, "gen/raw" if raw else "gen"))
            for label, prog in rows_for(res):
                ns = res.ns(prog)
                row = {
                    "group": g.key, "variant": vk, "role": v.role, "desc": v.desc, "program": label,
                    "section": None, "ns_per_event": ns, "ns_median": med(ns),
                    "verified_insns": insn_sum(res, prog, "verified_insns"),
                    "xlated_insns": insn_sum(res, prog, "xlated_insns"),
                    "events_per_run": [sum(s.run_cnt.values()) // max(1, len(s.run_cnt)) for s in res.samples],
                    "workload_per_run": res.sizes[0] if res.sizes else 0,
                    "counts_ok": all(s.ok for s in res.samples),
                    "count_deltas_last": res.samples[-1].deltas if res.samples and not g.describe else [],
                    "contents_last": g.describe(res.samples[-1].deltas, res.sizes[-1])
                    if g.describe and res.samples else None,
                }
                for name, other in (("ref", ref), ("gen", gen)):
                    if other is None or other is res or (vk in gen_keys and name == "gen") or \
                            (name == "ref" and g.ref == "gen"):
                        row[f"ratio_{name}"] = None
                        continue
                    o_prog = prog if prog is None or prog in other.variant.progs else None
                    if prog is not None and o_prog is None:
                        row[f"ratio_{name}"] = None
                        continue
                    paired = [a / b for a, b in zip(ns, other.ns(o_prog)) if b and b == b and a == a]
                    row[f"ratio_{name}"] = {
                        "ns_per_round": paired,
                        "ns_median": med(paired),
                        "verified": row["verified_insns"] / insn_sum(other, o_prog, "verified_insns"),
                        "xlated": row["xlated_insns"] / insn_sum(other, o_prog, "xlated_insns"),
                    }
                rows.append(row)
    return rows


def fmt_ratio(r: dict | None, key: str) -> str:
    if not r:
        return "-"
    if key == "ns":
        return spread(r["ns_per_round"], "{:.2f}") + "×"
    return f"{r[key]:.2f}×"


def machine() -> dict[str, str]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "kernel": platform.release(), "arch": platform.machine(), "nproc": str(os.cpu_count()),
        "possible_cpus": str(bpf.possible_cpus()), "cpu_model": model,
        "clang": subprocess.run(["clang", "--version"], capture_output=True, text=True).stdout.splitlines()[0],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=11, help="interleaved rounds (default 11)")
    ap.add_argument("--events", type=int, default=500_000,
                    help="getppid calls per run; UDP /25, TLB /10, block /500 (default 500000)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    ap.add_argument("--before", metavar="REF",
                    help="also render the counter specs with the template at git revision REF (e.g. "
                         "v0.1.0) and measure them beside `gen` (rows `before`)")
    args = ap.parse_args()

    ok, why = bpf.bpf_available()
    if not ok:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    rezolus = Path(os.environ.get("REZOLUS_DIR", REPO.parent / "shared" / "rezolus")).resolve()
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/compare.py", *sys.argv[1:]])
    started = time.monotonic()
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})  # workloads (and the C driver, by inheritance) on CPU 0

    try:
        with tempfile.TemporaryDirectory(prefix="compare-") as tmp, bpf.cleanup_on_signals(), \
                contextlib.ExitStack() as stack:
            tmpd = Path(tmp)
            objs = build(tmpd, rezolus)
            variants = list(VARIANTS)
            if args.before:
                before = build_before(tmpd, args.before)
                objs |= before
                variants += before_variants(args.before, before)
            (tmpd / "driver.c").write_text(DRIVER_C)
            driver = tmpd / "driver"
            subprocess.run(["cc", "-O2", "-o", str(driver), str(tmpd / "driver.c")], check=True)
            runs = {
                "udp": stack.enter_context(udp_loopback(UDP_SIZE)),
                "block": stack.enter_context(block_workload((BLOCK_SIZE,))),
                # the exact-count check needs the loop device's requests alone: tmpfs backing
                "block2": stack.enter_context(block_workload(HIST_SIZES, backing_dir=_backing_dir())),
                "tlb": driver_workload(driver, "tlb"),
                "getppid": driver_workload(driver, "getppid"),
                "lat": driver_workload(driver, "lat", N_SLEEPS, SLEEP_NS),
            }
            groups = {g.key: g for g in GROUPS}
            counts = {g.key: max(1, int(args.events * g.scale)) for g in GROUPS}
            results = {(v.group, v.key): Result(v) for v in variants}
            built_at = time.monotonic()
            with bpf.bpf_stats_enabled() as stats_mode:
                for g in GROUPS:  # warm-up, unmeasured
                    runs[g.workload](max(1, counts[g.key] // 4))
                for r in range(args.rounds):
                    order_g = GROUPS[r % len(GROUPS):] + GROUPS[: r % len(GROUPS)]
                    for g in order_g:
                        vs = [v for v in variants if v.group == g.key]
                        for v in vs[r % len(vs):] + vs[: r % len(vs)]:
                            measure(v, objs, runs[g.workload], counts[g.key], groups[g.key], results[(g.key, v.key)])
            build_s = built_at - started
    finally:
        os.sched_setaffinity(0, affinity)

    elapsed = time.monotonic() - started
    info = machine()
    rows = build_rows(results)
    if args.json:
        print(json.dumps({
            "command": command, "machine": info, "rezolus_dir": str(rezolus), "stats_mode": stats_mode,
            "rounds": args.rounds, "events": args.events, "elapsed_s": round(elapsed, 1),
            "workload_counts": counts, "rows": rows,
        }, indent=2))
        return 0 if all(r["counts_ok"] for r in rows) else 1

    print(f"Command: `{command}`  ")
    print(f"Machine: Linux {info['kernel']} {info['arch']}, nproc={info['nproc']}, possible CPUs="
          f"{info['possible_cpus']}, CPU: {info['cpu_model']}; {info['clang']}  ")
    print(f"Method: kernel BPF stats ({stats_mode}); {args.rounds} interleaved rounds; per run: "
          f"{counts['traffic']} UDP datagrams of {UDP_SIZE} B, {counts['tlb']} mmap/touch/munmap, "
          f"{counts['blockio']} O_DIRECT {BLOCK_SIZE} B writes, {counts['multi']} getppid, "
          f"{counts['hsizes']} O_DIRECT writes of each of {' and '.join(map(str, HIST_SIZES))} B, "
          f"{counts['hlat']} getppid + {N_SLEEPS} sleeps of {SLEEP_NS} ns; median "
          f"[min–max] over rounds; ratios are per-round paired; {elapsed:.0f} s total ({build_s:.0f} s render+build).")
    for g in GROUPS:
        print()
        against = "`gen`" if g.ref == "gen" else f"`{g.ref}` (÷ ref) and `gen` (÷ gen)"
        print(f"**{g.title}** — ratios vs {against}; counts check: {g.expect}")
        print()
        print("| variant | what | program | ns/event | ÷ ref (ns) | ÷ gen (ns) | verified insns | ÷ ref | ÷ gen "
              "| xlated insns | ÷ ref | ÷ gen | events/run | counts ok |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for row in rows:
            if row["group"] != g.key:
                continue
            ev = int(statistics.median(row["events_per_run"])) if row["events_per_run"] else 0
            print(f"| {row['variant']} | {row['desc']} | {row['program']} | {spread(row['ns_per_event'])} | "
                  f"{fmt_ratio(row['ratio_ref'], 'ns')} | {fmt_ratio(row['ratio_gen'], 'ns')} | "
                  f"{row['verified_insns']} | {fmt_ratio(row['ratio_ref'], 'verified')} | "
                  f"{fmt_ratio(row['ratio_gen'], 'verified')} | {row['xlated_insns']} | "
                  f"{fmt_ratio(row['ratio_ref'], 'xlated')} | {fmt_ratio(row['ratio_gen'], 'xlated')} | {ev} | "
                  f"{'yes' if row['counts_ok'] else 'NO'} |")
        if g.describe:
            print()
            print("Histogram contents, last round:")
            print()
            shown = set()
            for row in rows:  # one line per variant (a variant may have several program rows)
                if row["group"] == g.key and row["contents_last"] and row["variant"] not in shown:
                    shown.add(row["variant"])
                    print(f"- `{row['variant']}`: {row['contents_last']}")
    print()
    print("ns/event = Δrun_time_ns/Δrun_cnt of the program (multi: Σ over the programs on the hook / events). "
          "Events include background events on the hook (both CPUs). Hand-written objects are compiled from the "
          "snapshot; `hand-trim`, `gen+*`, `split`, `hash`, `floor` from bench/compare/*.bpf.c; `gen` from the "
          "freshly rendered template.")
    return 0 if all(r["counts_ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
