"""The C a generated sampler computes histogram bucket indices with.

``index_function()`` is a ``static __always_inline u32 histogram_index(u64 value)``
that returns exactly the bucket histogram.h's ``value_to_index(value, 3)`` returns,
which is the Rust ``histogram`` crate's index for ``Config::new(3, 64)`` (Rezolus'
``RwLockHistogram::new(HISTOGRAM_GROUPING_POWER, 64)``, 496 buckets).  It needs
only ``u32``/``u64`` and ``__always_inline`` (``vmlinux.h``, ``bpf_helpers.h``):
no ``#include`` of its own, so it works with or without ``helpers.h`` (which
already includes ``histogram.h``; never include that twice), and its name does
not clash with histogram.h's ``clz``/``value_to_index``.  Print it once, and
only in a ``mod.bpf.c`` that records a histogram: unused, it is an
``-Wunused-function`` error under Rezolus' ``-Wall -Werror``.

Why this code (``bench/histogram_index.py`` holds every candidate, and
``tests/test_histogram_index.py`` proves each index-for-index against the crate):
histogram.h finds the highest set bit with a six-level tree of 64-bit masks:
409 verified and 443 xlated instructions for a program with one inlined
increment of a u64 value, branching on the value's magnitude.  This computes
the same index from ``floor(log2(value >> 3))`` by a binary search whose steps
are arithmetic (no jump, no 64-bit immediate): 41 straight-line instructions.

Measured on Linux 6.18.44 x86_64 (2 vCPUs, KVM guest, other jobs running),
Debian clang 14.0.6: ``raw_tp/sys_enter`` programs that record 1, 2 and 4
histograms per event, against Rezolus' inlined ``histogram_incr`` in the same
run; ns/event from bpf_stats, median [min-max] of 11 per-round paired ratios
with 300,000 getppid per program and round::

    .venv/bin/python bench/histogram_index.py --rounds 11 --events 300000 --values ktime
    .venv/bin/python bench/histogram_index.py --rounds 11 --events 300000 --values spread

============================  ==================  ==================  ==================
histograms per event          1                   2                   4
============================  ==================  ==================  ==================
ns/event, ktime values        1.03 [0.95-1.11]x   1.00 [0.79-1.05]x   1.01 [0.85-1.11]x
ns/event, spread values       0.94 [0.82-0.99]x   0.82 [0.65-0.90]x   0.70 [0.64-0.78]x
verified insns (ktime)        54 vs 409           154 vs 1028         354 vs 3356
xlated insns (ktime)          59 vs 443           118 vs 810          234 vs 1457
============================  ==================  ==================  ==================

Swapped into Rezolus' own ``syscall/latency`` (``--samplers``: every
``histogram_incr`` of the snapshot's code replaced, nothing else), ``sys_exit``
with its 16 inlined increments goes from 6730 to 975 verified and from 7094 to
950 xlated instructions at 1.00 [0.87-1.19]x and 0.97 [0.78-1.31]x the ns/event
(two runs); ``scheduler/runqueue``'s ``sched_switch`` (3 increments) from 3162
to 1429 verified, 2293 to 1142 xlated (its ns/event, microseconds of per-cgroup
work here, is too noisy to compare).

``ktime``: values of stable magnitude (``bpf_ktime_get_ns() >> 9k``), where the
mask tree's branches predict well and both cost the same; ``spread``:
pseudo-random bit lengths, where the tree mispredicts.  Measured and not kept:
the search with ``if`` steps (``shift``: same ns, but verified instructions grow
to 1042 at 4 histograms); one shared ``__noinline`` index function, global or
static, around either index (the BPF-to-BPF call costs 1.07-1.29x in ns; a
global one is verified once, 0.06x instructions at 4 histograms, yet is
slower); clang's ``x != 0`` selects (``select``: short skips, 0.94-1.04x,
763 verified at 4); the branch-free search without ``& 1`` (``branchless_v1``:
clang folds each step into a 64-bit mask, one ``lddw`` per step).
"""

from __future__ import annotations

from rezolus_sampler.kernel.histogram import REZOLUS

GROUPING_POWER = REZOLUS.grouping_power  # = crate::common::HISTOGRAM_GROUPING_POWER
MAX_VALUE_POWER = REZOLUS.max_value_power
BUCKETS = REZOLUS.total_buckets  # = HISTOGRAM_BUCKETS_POW_3
INDEX_FUNCTION = "histogram_index"

_INDEX_C = """\
// Bucket of `value` in a Rezolus histogram of grouping power 3 over all of u64
// (HISTOGRAM_BUCKETS_POW_3 = 496 buckets): the index histogram.h's
// value_to_index(value, 3) and the Rust histogram crate give, without branches.
// With s = max(0, floor(log2(value)) - 3) the bucket is 8 * s + (value >> s) (below
// 16 that is the value itself). s = floor(log2(w)), w = value >> 3 (0 for w = 0), by
// a binary search: each step adds K to s when w >> K is non-zero, tested without a
// jump by adding 2^K - 1 to w >> K (< 2^K there) and taking the carry bit.
static __always_inline u32 histogram_index(u64 value) {
    u64 w = value >> 3;
    u64 s, t;

    s = (((w >> 32) + 0x1FFFFFFF) >> 29 & 1) << 5; // w >> 32 < 2^29: w < 2^61
    w >>= s;
    t = (((w >> 16) + 0xFFFF) >> 16 & 1) << 4;
    w >>= t;
    s += t;
    t = (((w >> 8) + 0xFF) >> 8 & 1) << 3;
    w >>= t;
    s += t;
    t = (((w >> 4) + 0xF) >> 4 & 1) << 2;
    w >>= t;
    s += t;
    t = (((w >> 2) + 0x3) >> 2 & 1) << 1;
    w >>= t;
    s += t;
    s += w >> 1;
    return (s << 3) + (u32)(value >> s);
}
"""


def index_function() -> str:
    """C text of ``histogram_index`` (clang-format clean under Rezolus' style)."""
    return _INDEX_C
