"""`rezolus-sampler audit`: the real tree, edits of it that break one rule each, generated samplers.

The snapshot's findings below were each checked by hand against the source
(README, "Auditing a tree"). Every other test copies one hand-written sampler
next to itself, makes the smallest edit that breaks (or waives) one rule, and
asserts exactly the findings the edit adds.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import REPO, default_answers, make_tree, render, require_rezolus, sampler_path

from rezolus_sampler.audit import audit, audit_sampler, checks, measure
from rezolus_sampler.audit.report import _plain, principle_sections, why
from rezolus_sampler.audit.source import read_sampler
from rezolus_sampler.kernel import bpf  # at collection: rendering swaps rezolus_sampler modules
from rezolus_sampler.tree.scan import attached_hooks

SAMPLERS = Path("src/agent/samplers")

# (principle, check, file:line under src/agent/samplers): every finding on the snapshot,
# each read against the source by hand (see README, "Auditing a tree", for what each is).
SNAPSHOT_FINDINGS = [
    ("P2", "hash-map", "blockio/linux/latency/mod.bpf.c:27"),
    ("P3", "shared-hook", "blockio/linux/latency/mod.bpf.c:137"),
    ("P3", "shared-hook", "blockio/linux/requests/mod.bpf.c:213"),
    ("P6", "hot-output", "cpu/linux/bandwidth/mod.bpf.c:137"),
    ("P17", "doc-omits", "cpu/linux/bandwidth/mod.rs:6"),
    ("P17", "doc-metric", "cpu/linux/bandwidth/mod.rs:8"),
    ("P3", "shared-hook", "cpu/linux/migrations/mod.bpf.c:123"),
    ("P17", "doc-omits", "cpu/linux/migrations/mod.rs:1"),
    ("P17", "doc-hook", "cpu/linux/migrations/mod.rs:2"),
    ("P17", "doc-metric", "cpu/linux/migrations/mod.rs:6"),
    ("P3", "shared-hook", "cpu/linux/perf/mod.bpf.c:151"),
    ("P4", "description-differs", "cpu/linux/tlb_flush/stats.rs:96"),
    ("P6", "hot-output", "cpu/linux/usage/mod.bpf.c:437"),
    ("P17", "doc-omits", "cpu/linux/usage/mod.rs:7"),
    ("P17", "doc-omits", "network/linux/interfaces/mod.rs:1"),
    ("P17", "doc-omits", "network/linux/interfaces/mod.rs:3"),
    ("P17", "doc-omits", "network/linux/traffic/mod.rs:1"),
    ("P17", "doc-hook", "network/linux/traffic/mod.rs:3"),
    ("P17", "doc-omits", "network/linux/traffic/mod.rs:5"),
    ("P17", "doc-metric", "network/linux/traffic/mod.rs:6"),
    ("P17", "doc-metric", "network/linux/traffic/mod.rs:7"),
    ("P17", "doc-metric", "network/linux/traffic/mod.rs:8"),
    ("P17", "doc-metric", "network/linux/traffic/mod.rs:9"),
    ("P3", "shared-hook", "scheduler/linux/runqueue/mod.bpf.c:392"),
    ("P17", "doc-omits", "scheduler/linux/runqueue/mod.rs:6"),
    ("P17", "doc-metric", "scheduler/linux/runqueue/mod.rs:7"),
    ("P17", "doc-metric", "scheduler/linux/runqueue/mod.rs:8"),
    ("P17", "doc-metric", "scheduler/linux/runqueue/mod.rs:9"),
    ("P17", "doc-metric", "scheduler/linux/runqueue/mod.rs:10"),
    ("P17", "doc-metric", "scheduler/linux/runqueue/mod.rs:11"),
    ("P4", "description-differs", "scheduler/linux/runqueue/stats.rs:125"),
    ("P4", "description-differs", "scheduler/linux/runqueue/stats.rs:171"),
    ("P3", "shared-hook", "syscall/linux/counts/mod.bpf.c:199"),
    ("P3", "shared-hook", "syscall/linux/latency/mod.bpf.c:172"),
    ("P2", "hash-map", "tcp/linux/connect_latency/mod.bpf.c:27"),
    ("P3", "shared-hook", "tcp/linux/connect_latency/mod.bpf.c:99"),
    ("P17", "doc-omits", "tcp/linux/connect_latency/mod.rs:7"),
    ("P17", "doc-metric", "tcp/linux/connect_latency/mod.rs:8"),
    ("P2", "hash-map", "tcp/linux/packet_latency/mod.bpf.c:27"),
    ("P3", "shared-hook", "tcp/linux/packet_latency/mod.bpf.c:104"),
    ("P17", "doc-omits", "tcp/linux/packet_latency/mod.rs:6"),
    ("P17", "doc-metric", "tcp/linux/packet_latency/mod.rs:7"),
    ("P17", "doc-omits", "tcp/linux/receive/mod.rs:4"),
    ("P17", "doc-metric", "tcp/linux/receive/mod.rs:5"),
    ("P17", "doc-metric", "tcp/linux/receive/mod.rs:6"),
    ("P17", "doc-omits", "tcp/linux/retransmit/mod.rs:1"),
    ("P17", "doc-hook", "tcp/linux/retransmit/mod.rs:2"),
    ("P17", "doc-omits", "tcp/linux/retransmit/mod.rs:4"),
    ("P17", "doc-metric", "tcp/linux/retransmit/mod.rs:5"),
    ("P17", "doc-omits", "tcp/linux/traffic/mod.rs:5"),
    ("P17", "doc-metric", "tcp/linux/traffic/mod.rs:6"),
    ("P17", "doc-metric", "tcp/linux/traffic/mod.rs:7"),
    ("P17", "doc-metric", "tcp/linux/traffic/mod.rs:8"),
    ("P17", "doc-metric", "tcp/linux/traffic/mod.rs:9"),
    ("P17", "doc-metric", "tcp/linux/traffic/mod.rs:10"),
    ("P17", "doc-metric", "tcp/linux/traffic/mod.rs:11"),
]


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    require_rezolus()
    return make_tree(tmp_path_factory.mktemp("audit") / "rezolus")


@pytest.fixture(scope="module")
def snapshot_report(snapshot):
    return audit(snapshot)


@pytest.fixture
def mutate(snapshot):
    """Copy a sampler next to itself with exact text edits; the copies are removed afterwards.
    Copies are not in build.rs SOURCES, so they never count as another sampler's hooks."""
    made: list[Path] = []

    def make(
        rel: str, suffix: str, edits: dict[str, list[tuple[str, str]]], source: Path | None = None
    ) -> Path:
        src = source or snapshot / SAMPLERS / rel
        dst = snapshot / SAMPLERS / rel / ".." / f"{Path(rel).name}_{suffix}"
        dst = dst.resolve()
        shutil.copytree(src, dst)
        made.append(dst)
        for name, pairs in edits.items():
            text = (dst / name).read_text()
            for old, new in pairs:
                assert text.count(old) == 1, f"{rel}/{name}: {old!r} occurs {text.count(old)} times"
                text = text.replace(old, new)
            (dst / name).write_text(text)
        return dst

    yield make
    for d in made:
        shutil.rmtree(d, ignore_errors=True)


def _key(f) -> tuple[str, str]:
    return f.check, re.sub(r"\w+\.rs:\d+", "", f.what)


def added(tree: Path, original: Path, changed: Path) -> list:
    """Findings of `changed` that `original` lacks (the copy shares its original's hooks)."""
    base = {_key(f) for f in audit_sampler(tree, original)}
    return [
        f for f in audit_sampler(tree, changed) if f.check != "shared-hook" and _key(f) not in base
    ]


def line_of(path: Path, text: str) -> int:
    lines = path.read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


# --------------------------------------------------------------------------
# the real tree
# --------------------------------------------------------------------------


def test_snapshot_findings_are_the_hand_checked_list(snapshot_report) -> None:
    got = [
        (f.principle, f.check, f.location(snapshot_report.root).replace(str(SAMPLERS) + "/", ""))
        for f in snapshot_report.findings
    ]
    assert sorted(got) == sorted(SNAPSHOT_FINDINGS)
    assert not snapshot_report.waived
    assert len(snapshot_report.samplers) == 17  # build.rs SOURCES
    for f in snapshot_report.findings:
        assert f.what and f.fix and f.why and f.why != principle_sections()[f.principle][0]


def test_known_drift_is_found(snapshot_report) -> None:
    """Facts brief 6.10 (shared hooks) and 6.9 (doc drift), and the hash maps on hot paths."""
    shared: dict[str, set[str]] = {}
    for f in snapshot_report.findings:
        if f.check == "shared-hook":
            shared.setdefault(re.match(r"`(\w+)`", f.what).group(1), set()).add(f.sampler)
    assert shared == {
        "sched_switch": {"cpu_migrations", "cpu_perf", "scheduler_runqueue"},
        "block_rq_complete": {"blockio_latency", "blockio_requests"},
        "sys_enter": {"syscall_counts", "syscall_latency"},
        "tcp_destroy_sock": {"tcp_connect_latency", "tcp_packet_latency"},
    }
    hashes = {f.sampler for f in snapshot_report.findings if f.check == "hash-map"}
    assert hashes == {"blockio_latency", "tcp_connect_latency", "tcp_packet_latency"}
    doc = {
        (f.sampler, re.search(r"(?:hook|metric) `([^`]+)`", f.what).group(1))
        for f in snapshot_report.findings
        if f.check in ("doc-hook", "doc-metric")
    }
    for item in [
        ("cpu_migrations", "sched_migrate_task"),
        ("cpu_migrations", "cpu_migrations_per_cpu"),
        ("tcp_retransmit", "tcp_retransmit_timer"),
        ("tcp_retransmit", "tcp/transmit/retransmit"),
        ("network_traffic", "netdev_start_xmit"),
        ("network_traffic", "network/receive/frames"),
    ]:
        assert item in doc


def test_guarded_ring_buffer_output_passes(snapshot_report, snapshot, mutate) -> None:
    # the cgroup add-on (cgroup.h's serial-number check), cpu_bandwidth's `if (ret == 0)` record
    # and cpu_usage's first-seen task record are guarded; only two unguarded records remain
    outputs = {f.location(snapshot) for f in snapshot_report.findings if f.check == "hot-output"}
    assert outputs == {
        "src/agent/samplers/cpu/linux/bandwidth/mod.bpf.c:137",
        "src/agent/samplers/cpu/linux/usage/mod.bpf.c:437",
    }
    # the same record behind a first-seen check of its own passes too
    copy = mutate(
        "cpu/linux/usage",
        "guarded",
        {
            "mod.bpf.c": [
                (
                    "    struct task_exit* exit_event = bpf_ringbuf_reserve(",
                    "    u64* seen = bpf_map_lookup_elem(&task_start_times, &pid);\n"
                    "    if (!seen)\n        return 0;\n    if (*seen == 1)\n        return 0;\n"
                    "    struct task_exit* exit_event = bpf_ringbuf_reserve(",
                )
            ]
        },
    )
    assert [f for f in audit_sampler(snapshot, copy) if f.check == "hot-output"] == []


# --------------------------------------------------------------------------
# one rule broken at a time
# --------------------------------------------------------------------------


def test_bank_width_mismatch_in_both_directions(snapshot, mutate) -> None:
    wider = mutate(
        "network/linux/traffic",
        "wide",
        {"mod.bpf.c": [("#define COUNTER_GROUP_WIDTH 8", "#define COUNTER_GROUP_WIDTH 16")]},
    )
    [f] = added(snapshot, snapshot / SAMPLERS / "network/linux/traffic", wider)
    assert (f.principle, f.check, f.line) == (
        "P7",
        "bank-width",
        line_of(wider / "mod.bpf.c", "max_entries"),
    )
    assert "registers 4 statics" in f.what and "W = roundup(4, 8) = 8" in f.what
    assert "silently wrong" in f.why

    narrower = mutate(
        "blockio/linux/requests",
        "narrow",
        {"mod.bpf.c": [("#define ERR_BANK_WIDTH 32", "#define ERR_BANK_WIDTH 24")]},
    )
    [f] = added(snapshot, snapshot / SAMPLERS / "blockio/linux/requests", narrower)
    assert (
        f.check == "bank-width"
        and "ERR_BANK_WIDTH = 24" in f.what
        and "roundup(28, 8) = 32" in f.what
    )
    assert "reader crashes" in f.why


def test_bank_width_of_the_generated_bank_form(rendered, snapshot, mutate) -> None:
    """Generated maps hold `struct { u64 slot[W]; }` values: the width is read from the struct."""
    _, dirs = rendered
    rel = "scheduler/linux/processes"
    source = dirs["default"]
    same = mutate(rel, "copy", {}, source=source)
    assert [f for f in audit_sampler(snapshot, same) if f.check != "shared-hook"] == []
    wider = mutate(
        rel,
        "wide",
        {"mod.bpf.c": [("#define COUNTERS_WIDTH 8", "#define COUNTERS_WIDTH 16")]},
        source=source,
    )
    assert [(f.check, f.line) for f in audit_sampler(snapshot, wider)] == [
        ("bank-width", line_of(wider / "mod.bpf.c", "__type(value, struct counters_bank)"))
    ]


def test_map_type_and_flag_findings(snapshot, mutate) -> None:
    original = snapshot / SAMPLERS / "network/linux/traffic"
    cases = {
        "noflag": ([("    __uint(map_flags, BPF_F_MMAPABLE);\n", "")], [("P7", "mmap-flag")]),
        "percpu": ([("BPF_MAP_TYPE_ARRAY", "BPF_MAP_TYPE_PERCPU_ARRAY")], [("P7", "percpu-array")]),
        "lru": (
            [("BPF_MAP_TYPE_ARRAY", "BPF_MAP_TYPE_LRU_HASH")],
            [("P2", "hash-map"), ("P7", "mmap-flag")],
        ),
    }
    for suffix, (edits, expected) in cases.items():
        copy = mutate("network/linux/traffic", suffix, {"mod.bpf.c": edits})
        assert (
            sorted((f.principle, f.check) for f in added(snapshot, original, copy)) == expected
        ), suffix
    renamed = mutate(
        "network/linux/traffic",
        "renamed",
        {"mod.rs": [('.counters("counters", counters', '.counters("counter", counters')]},
    )
    assert [(f.check, f.file.name) for f in added(snapshot, original, renamed)] == [
        ("map-missing", "mod.rs")
    ]
    # a map only the kernel uses needs no mmap flag: runqueue's per-pid start arrays raise nothing
    runqueue = audit_sampler(snapshot, snapshot / SAMPLERS / "scheduler/linux/runqueue")
    assert not [f for f in runqueue if f.check in ("mmap-flag", "hash-map", "percpu-array")]


def test_metric_macros_and_runtime_registration(snapshot, mutate) -> None:
    macro = (
        "\nmacro_rules! counter {\n    ($name:ident) => {\n"
        '        #[metric(name = "network_extra", description = "Extra")]\n'
        "        pub static $name: LazyCounter = LazyCounter::new(Counter::default);\n    };\n}\n\n"
        "counter!(NETWORK_EXTRA);\n"
    )
    copy = mutate(
        "network/linux/traffic",
        "macro",
        {
            "stats.rs": [
                (
                    "pub static NETWORK_TX_PACKETS: LazyCounter = "
                    "LazyCounter::new(Counter::default);\n",
                    "pub static NETWORK_TX_PACKETS: LazyCounter = "
                    "LazyCounter::new(Counter::default);\n" + macro,
                )
            ],
            "mod.rs": [
                (
                    "    let counters = vec![\n",
                    "    let _extra = "
                    'metriken::MetricBuilder::new("network_extra").build(metriken::Counter::new());\n'
                    "    let counters = vec![\n        &NETWORK_UNDECLARED,\n",
                )
            ],
        },
    )
    found = added(snapshot, snapshot / SAMPLERS / "network/linux/traffic", copy)
    stats, mod = copy / "stats.rs", copy / "mod.rs"
    assert sorted((f.check, f.file.name, f.line) for f in found) == sorted(
        [
            ("metric-macro", "stats.rs", line_of(stats, "macro_rules! counter")),
            ("metric-macro", "stats.rs", line_of(stats, '#[metric(name = "network_extra"')),
            ("metric-macro", "stats.rs", line_of(stats, "counter!(NETWORK_EXTRA)")),
            ("metric-runtime", "mod.rs", line_of(mod, "MetricBuilder")),
            ("metric-undeclared", "mod.rs", line_of(mod, "&NETWORK_UNDECLARED")),
        ]
    )
    assert {f.principle for f in found} == {"P4"}


def test_descriptions_build_rs_cannot_read(snapshot, mutate) -> None:
    bytes_desc = 'description = "The number of bytes transferred over the network",\n'
    packets_desc = 'description = "The number of packets transferred over the network",\n'
    copy = mutate(
        "network/linux/traffic",
        "desc",
        {
            "stats.rs": [
                (
                    bytes_desc + '    metadata = { direction = "receive"',
                    bytes_desc.replace(" = ", "=") + '    metadata = { direction = "receive"',
                ),
                (
                    bytes_desc + '    metadata = { direction = "transmit"',
                    'description = "The number of bytes transferred over the network (see [1)]",\n'
                    '    metadata = { direction = "transmit"',
                ),
                (
                    packets_desc + '    metadata = { direction = "receive"',
                    'description = "The number of \\"packets\\" transferred over the network",\n'
                    '    metadata = { direction = "receive"',
                ),
                (
                    packets_desc + '    metadata = { direction = "transmit"',
                    'description = "Packets sent",\n    metadata = { direction = "transmit"',
                ),
            ]
        },
    )
    whats = sorted(
        (f.check, f.what)
        for f in added(snapshot, snapshot / SAMPLERS / "network/linux/traffic", copy)
    )
    assert len(whats) == 4, whats
    text = "\n".join(w for _, w in whats)
    assert 'literal `description = "`' in text  # the spacing build.rs needs
    assert "contains `)]` before its end" in text
    assert 'reads the description of `network_packets` as "The number of \\"' in text
    assert "build.rs keeps the family's first description, \"The number of packets" in text
    assert [c for c, _ in whats].count("description-parser") == 3


def test_refresh_path_io(snapshot, mutate) -> None:
    copy = mutate(
        "network/linux/traffic",
        "io",
        {
            "mod.rs": [
                (
                    "fn init(config: Arc<Config>) -> SamplerResult {\n",
                    "fn handle_extra(_data: &[u8]) -> i32 {\n"
                    '    let _ = std::fs::read_to_string("/proc/net/dev");\n    probe()\n}\n\n'
                    "fn probe() -> i32 {\n"
                    '    let _ = std::process::Command::new("true").status();\n    0\n}\n\n'
                    "fn init(config: Arc<Config>) -> SamplerResult {\n"
                    '    let _ = std::fs::read_to_string("/sys/devices/system/cpu/possible");\n',
                ),
                (
                    '    .counters("counters", counters, &COUNTERS_ACQ)\n',
                    '    .counters("counters", counters, &COUNTERS_ACQ)\n    '
                    '.ringbuf_handler("extra", handle_extra)\n',
                ),
            ]
        },
    )
    found = added(snapshot, snapshot / SAMPLERS / "network/linux/traffic", copy)
    mod = copy / "mod.rs"
    # the handler runs on every refresh, and so does what it calls; init runs once and is fine
    assert sorted((f.principle, f.check, f.line) for f in found) == sorted(
        [
            ("P1", "refresh-io", line_of(mod, '"/proc/net/dev"')),
            ("P12", "refresh-io", line_of(mod, "Command::new")),
        ]
    )


def test_loops_and_unguarded_ring_buffer_output(snapshot, mutate) -> None:
    copy = mutate(
        "network/linux/traffic",
        "hot",
        {
            "mod.bpf.c": [
                (
                    "    idx = offset + RX_PACKETS;\n",
                    "    for (int i = 0; i < 4; i++) "
                    "{\n        array_incr(&counters, offset + i);\n    }\n"
                    '    bpf_printk("rx");\n    idx = offset + RX_PACKETS;\n',
                ),
                (
                    'SEC("raw_tp/net_dev_start_xmit")',
                    "struct "
                    "{\n    __uint(type, BPF_MAP_TYPE_RINGBUF);\n    __uint(max_entries, 4096);\n} "
                    'events SEC(".maps");\n\n'
                    'SEC("raw_tp/net_dev_start_xmit")',
                ),
                (
                    "    idx = offset + TX_PACKETS;\n",
                    "    u64* record = bpf_ringbuf_reserve(&events, sizeof(u64), 0);\n"
                    "    if (record) "
                    "{\n        *record = len;\n        bpf_ringbuf_submit(record, 0);\n    }\n"
                    "    idx = offset + TX_PACKETS;\n",
                ),
            ]
        },
    )
    found = added(snapshot, snapshot / SAMPLERS / "network/linux/traffic", copy)
    c = copy / "mod.bpf.c"
    assert sorted((f.check, f.line) for f in found) == sorted(
        [
            ("hot-loop", line_of(c, "for (int i")),
            ("hot-print", line_of(c, "bpf_printk")),
            ("hot-output", line_of(c, "bpf_ringbuf_reserve")),
        ]
    )
    assert all(f.principle == "P6" for f in found)
    assert all("`netif_receive_skb`" in f.what for f in found if f.check != "hot-output")
    assert "`net_dev_start_xmit`" in next(f.what for f in found if f.check == "hot-output")


def test_histogram_power_and_buckets(snapshot, mutate) -> None:
    original = snapshot / SAMPLERS / "syscall/linux/latency"
    power = mutate(
        "syscall/linux/latency",
        "power",
        {"mod.bpf.c": [("#define HISTOGRAM_POWER 3", "#define HISTOGRAM_POWER 4")]},
    )
    found = added(snapshot, original, power)
    assert {(f.principle, f.check) for f in found} == {("P9", "histogram-power")}
    assert len(found) == 16  # one per histogram_incr call, each naming its map
    assert "grouping power HISTOGRAM_POWER = 4" in found[0].what and "power 3" in found[0].what

    buckets = mutate(
        "syscall/linux/latency",
        "buckets",
        {
            "stats.rs": [
                ("static LATENCY_HISTOGRAM_MAX: u8 = 64;", "static LATENCY_HISTOGRAM_MAX: u8 = 32;")
            ]
        },
    )
    found = added(snapshot, original, buckets)
    assert {f.check for f in found} == {"histogram-buckets"} and len(found) == 16
    assert "has 496 buckets" in found[0].what and "= 240" in found[0].what

    receive = snapshot / SAMPLERS / "tcp/linux/receive"
    unindexed = mutate(
        "tcp/linux/receive",
        "index",
        {
            "mod.bpf.c": [
                ("histogram_incr(&srtt, HISTOGRAM_POWER, srtt_ns);", "array_incr(&srtt, 0);")
            ]
        },
    )
    assert [(f.check, "`srtt`" in f.what) for f in added(snapshot, receive, unindexed)] == [
        ("histogram-index", True)
    ]
    rust = mutate(
        "tcp/linux/receive",
        "rust",
        {
            "stats.rs": [
                (
                    "pub static TCP_JITTER: RwLockHistogram = "
                    "RwLockHistogram::new(HISTOGRAM_GROUPING_POWER, 64);",
                    "pub static TCP_JITTER: RwLockHistogram = RwLockHistogram::new(4, 64);",
                )
            ]
        },
    )
    assert sorted(f.check for f in added(snapshot, receive, rust)) == [
        "histogram-buckets",
        "histogram-power",
        "histogram-power",
    ]  # C 3 vs Rust 4, and 4 is not 3


def test_acquisition_group_findings(snapshot, mutate) -> None:
    traffic = snapshot / SAMPLERS / "network/linux/traffic"
    unregistered = mutate(
        "network/linux/traffic",
        "unreg",
        {
            "stats.rs": [
                (
                    "#[distributed_slice(crate::agent::samplers::ACQUISITION_GROUPS)]\n"
                    "static COUNTERS_ACQ_REG: &'static AcquisitionGroup = &COUNTERS_ACQ;\n",
                    "",
                )
            ]
        },
    )
    found = added(snapshot, traffic, unregistered)
    assert [f.line for f in found if "not registered" in f.what] == [
        line_of(unregistered / "stats.rs", "pub static COUNTERS_ACQ")
    ]
    assert (
        len([f for f in found if "no group of that name" in f.what]) == 4
    )  # every member's acq_group

    typo = mutate(
        "network/linux/traffic",
        "typo",
        {
            "stats.rs": [
                (
                    "metadata = "
                    '{ direction = "receive", unit = "bytes", acq_group = "network_traffic_counters" }',
                    "metadata = "
                    '{ direction = "receive", unit = "bytes", acq_group = "network_traffic_countrs" }',
                )
            ]
        },
    )
    found = added(snapshot, traffic, typo)
    assert len(found) == 2 and all("NETWORK_RX_BYTES" in f.what for f in found)

    stamped = mutate(
        "network/linux/traffic",
        "stamped",
        {
            "stats.rs": [
                (
                    "pub static COUNTERS_ACQ: AcquisitionGroup = AcquisitionGroup::new(",
                    "pub static COUNTERS_ACQ: AcquisitionGroup = "
                    "AcquisitionGroup::new_reader_stamped(",
                )
            ]
        },
    )
    assert (
        len([f for f in added(snapshot, traffic, stamped) if "scalar LazyCounter" in f.what]) == 4
    )

    shared = mutate(
        "blockio/linux/requests",
        "shared",
        {
            "mod.rs": [
                (
                    '.counters("errors", errors, &ERRORS_ACQ)',
                    '.counters("errors", errors, &COUNTERS_ACQ)',
                )
            ]
        },
    )
    found = added(snapshot, snapshot / SAMPLERS / "blockio/linux/requests", shared)
    assert any("`COUNTERS_ACQ` brackets 2 read sections" in f.what for f in found)
    assert len([f for f in found if "under group `blockio_requests_counters`" in f.what]) == 28

    families = mutate(
        "scheduler/linux/runqueue",
        "families",
        {
            "mod.rs": [
                (
                    '.histogram("running", &SCHEDULER_RUNNING, &RUNNING_ACQ)',
                    '.histogram("running", &SCHEDULER_RUNNING, &RUNQLAT_ACQ)',
                )
            ]
        },
    )
    found = added(snapshot, snapshot / SAMPLERS / "scheduler/linux/runqueue", families)
    assert any("several metric families" in f.what for f in found)
    assert all(f.principle == "P12" for f in found)


def test_twin_findings(snapshot, mutate) -> None:
    requests = snapshot / SAMPLERS / "blockio/linux/requests"
    typo = mutate(
        "blockio/linux/requests",
        "typo",
        {
            "mod.rs": [
                (
                    '&["block_rq_complete_raw", "block_rq_requeue_raw"]',
                    '&["block_rq_complete_rw", "block_rq_requeue_raw"]',
                )
            ]
        },
    )
    found = added(snapshot, requests, typo)
    assert sorted(f.check for f in found) == ["hook-twice", "twin"]
    assert any("`block_rq_complete_rw`" in f.what for f in found)  # and with BTF both twins load

    nobtf = mutate(
        "blockio/linux/requests",
        "nobtf",
        {
            "mod.rs": [
                ('&["block_rq_complete_btf", "block_rq_requeue_btf"]', '&["block_rq_complete_btf"]')
            ]
        },
    )
    found = added(snapshot, requests, nobtf)
    assert sorted(f.check for f in found) == ["hook-twice", "twin"]
    assert any(
        "`block_rq_requeue_btf` (tp_btf/block_rq_requeue) needs the kernel's own BTF" in f.what
        for f in found
    )


# --------------------------------------------------------------------------
# waivers
# --------------------------------------------------------------------------

_HASH_DECL = "struct {\n    __uint(type, BPF_MAP_TYPE_HASH);"


def _hash_waiver(snapshot, mutate, suffix: str, comment: str) -> tuple[list, list]:
    copy = mutate(
        "blockio/linux/latency", suffix, {"mod.bpf.c": [(_HASH_DECL, comment + _HASH_DECL)]}
    )
    report = audit(snapshot, [copy])
    return (
        [f for f in report.findings if f.check == "hash-map"],
        [f for f in report.waived if f.check == "hash-map"],
    )


def test_waiver_with_reason_waives(snapshot, mutate) -> None:
    reason = "keys are request pointers, at most 65536 in flight; an array cannot index a pointer"
    open_, waived = _hash_waiver(snapshot, mutate, "waived", f"// P2 exception: {reason}\n")
    assert open_ == [] and [f.waiver for f in waived] == [reason]
    # the reason may continue on the next comment line, and a block comment works too
    open_, waived = _hash_waiver(
        snapshot, mutate, "multi", "// P2 exception:\n// keys are request pointers\n"
    )
    assert open_ == [] and waived[0].waiver == "keys are request pointers"
    open_, waived = _hash_waiver(snapshot, mutate, "block", f"/* P2 exception: {reason} */\n")
    assert open_ == [] and len(waived) == 1
    # a waiver in Rust, on a #[metric] block: the tlb_flush sampler then audits clean (exit 0)
    copy = mutate(
        "cpu/linux/tlb_flush",
        "waived",
        {
            "stats.rs": [
                (
                    '#[metric(\n    name = "cpu_tlb_flush",\n    description = "The number of '
                    "tlb_flush events with unknown",
                    "// P4 exception: the unknown reason exists only on arm64 and says so\n"
                    '#[metric(\n    name = "cpu_tlb_flush",\n    description = "The number of '
                    "tlb_flush events with unknown",
                )
            ]
        },
    )
    proc = _cli(snapshot, "--sampler", str(copy))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 finding(s), 1 waived" in proc.stdout and "waived: P4" in proc.stdout


@pytest.mark.parametrize(
    "comment",
    [
        "// P2 exception:\n",  # no reason
        "// P2 exception: ok\n",  # one word is not a reason
        "// P3 exception: keys are request pointers, sparse and bounded\n",  # another principle
        "// P2 exception: keys are request pointers, sparse and bounded\n\n",  # not next to the code
        "// P2: keys are request pointers, sparse and bounded\n",  # not the waiver form
    ],
)
def test_waiver_without_reason_does_not_waive(snapshot, mutate, comment: str) -> None:
    open_, waived = _hash_waiver(snapshot, mutate, "bad", comment)
    assert len(open_) == 1 and waived == []


# --------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rezolus_sampler", "audit", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_exit_codes_and_usage_errors(snapshot, tmp_path) -> None:
    proc = _cli(snapshot)
    assert proc.returncode == 1 and "56 finding(s)" in proc.stdout
    # the tree is found from --sampler, relative paths are taken from the tree
    proc = _cli("--sampler", snapshot / SAMPLERS / "cpu/linux/perf")
    assert proc.returncode == 1 and "1 finding(s) (P3 1)" in proc.stdout
    proc = _cli(snapshot, "--sampler", SAMPLERS / "cpu/linux/perf")
    assert proc.returncode == 1 and "audit of" in proc.stdout
    for args, message in [
        ((tmp_path,), "not a Rezolus tree"),
        ((snapshot, "--sampler", snapshot / "src"), "mod.bpf.c is missing"),
        (("--sampler", tmp_path), "not inside a Rezolus tree"),
        ((snapshot, "--no-such-option"), "unrecognized arguments"),
        ((snapshot, "--sampler", tmp_path), "is not inside the tree"),
    ]:
        proc = _cli(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr


def test_json_report(snapshot) -> None:
    proc = _cli(snapshot, "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["counts"] == {"P2": 3, "P3": 9, "P4": 3, "P6": 2, "P17": 39}
    assert sum(report["counts"].values()) == len(report["findings"]) == len(SNAPSHOT_FINDINGS)
    text = _plain((REPO / "principles.md").read_text())
    for f in report["findings"]:
        assert set(f) == {"principle", "check", "sampler", "file", "line", "what", "why", "fix"}
        assert f["why"] in text  # the reason is principles.md's own sentence
        assert (snapshot / f["file"]).is_file() and f["line"] >= 1


def test_why_lines_come_from_principles_md() -> None:
    sections = principle_sections()
    reasons = {k: v for k, v in vars(checks).items() if k.startswith("WHY_")}
    assert len(reasons) >= 20
    for name, (principle, phrase) in reasons.items():
        sentence = why(principle, phrase)
        assert phrase in sentence and sentence != sections[principle][0], name


def test_readme_counts_match_a_real_run(snapshot_report) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Auditing a tree") :]
    rows = dict(re.findall(r"^\| (P\d+) \| (\d+) \|", section, re.M))
    assert {p: int(n) for p, n in rows.items()} == snapshot_report.counts()


# --------------------------------------------------------------------------
# generated samplers
# --------------------------------------------------------------------------


def test_generated_samplers_audit_clean(rendered) -> None:
    """Every generated sampler passes every check; the only findings are hooks a hand-written
    sampler of the tree also attaches, exactly the ones the generator warned about (P3)."""
    tree, dirs = rendered
    hooks = attached_hooks(tree)
    report = audit(tree, list(dirs.values()))
    assert len(report.samplers) == len(dirs) and not report.notes and not report.waived
    for f in report.findings:
        assert f.check == "shared-hook", (f.location(tree), f.what)
        hook = re.match(r"`(\w+)`", f.what).group(1)
        assert [s for s in hooks[hook] if s != f.sampler], hook


def test_default_sampler_alone_exits_zero(tree) -> None:
    render(tree, default_answers())
    proc = _cli("--sampler", sampler_path(tree, default_answers()))
    assert proc.returncode == 0, proc.stdout
    assert "0 finding(s), 0 waived; clean: scheduler_processes" in proc.stdout


# --------------------------------------------------------------------------
# --measure (root, BPF)
# --------------------------------------------------------------------------


def _prog_exists(prog_id: int) -> bool:
    return (
        subprocess.run(
            ["bpftool", "prog", "show", "id", str(prog_id)], capture_output=True
        ).returncode
        == 0
    )


def test_measure_reports_cost_refusals_and_leaves_nothing(snapshot, mutate) -> None:
    ok, reason = bpf.bpf_available(require_btf=False)
    if not ok:
        pytest.skip(reason)
    refused = mutate(
        "network/linux/traffic",
        "refused",
        {
            "mod.bpf.c": [
                (
                    "int BPF_PROG(netif_receive_skb, struct sk_buff* skb) "
                    "{\n    u64 len;\n    u32 idx;\n\n"
                    "    len = BPF_CORE_READ(skb, len);",
                    "int BPF_PROG(netif_receive_skb, struct sk_buff* skb) "
                    "{\n    u64 len;\n    u32 idx;\n\n"
                    "    len = skb->len; // raw_tp arguments cannot be dereferenced: the verifier "
                    "refuses",
                )
            ]
        },
    )
    proc = _cli(
        snapshot,
        "--json",
        "--measure",
        "--sampler",
        SAMPLERS / "network/linux/traffic",
        "--sampler",
        SAMPLERS / "tcp/linux/retransmit",
        "--sampler",
        refused,
    )
    assert (
        proc.returncode == 1 and "Traceback" not in proc.stderr
    )  # findings: the copies' doc drift
    measured = json.loads(proc.stdout)["measure"]
    by_dir = {e["dir"]: e for e in measured["samplers"]}
    traffic = by_dir["src/agent/samplers/network/linux/traffic"]
    assert traffic["status"] == "measured"
    assert [p["name"] for p in traffic["programs"]] == ["netif_receive_skb", "net_dev_start_xmit"]
    for p in traffic["programs"]:  # 5,000 loopback datagrams each way
        assert (
            p["attached"]
            and p["runs"] >= 5000
            and p["ns_per_event"] > 0
            and p["verified_insns"] > 0
        )
    [kprobe] = by_dir["src/agent/samplers/tcp/linux/retransmit"]["programs"]
    assert kprobe["attached"] or kprobe["reason"]  # this kernel has no kprobes: listed with why
    bad = by_dir[str(refused.resolve().relative_to(snapshot.resolve()))]
    assert bad["status"] == "refused" and "failed" in bad["reason"]
    ids = [p["id"] for e in measured["samplers"] for p in e["programs"] if p.get("id")]
    assert ids
    if shutil.which("bpftool"):
        for _ in range(40):  # released programs are freed after an RCU grace period
            if not any(_prog_exists(i) for i in ids):
                break
            time.sleep(0.05)
        assert not [i for i in ids if _prog_exists(i)], "programs left loaded"


def test_measure_without_root_says_why(snapshot, monkeypatch) -> None:
    monkeypatch.setattr(measure.os, "geteuid", lambda: 1000)
    report = measure.measure(snapshot, [read_sampler(snapshot, snapshot / SAMPLERS / "cpu/linux/perf")])
    assert report["cannot"].startswith("not running as root") and report["samplers"] == []
    assert measure.format_text(report).startswith("measure: cannot measure here: not running as root")
