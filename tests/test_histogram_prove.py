"""rezolus-sampler prove reads histogram maps as Rezolus does, on hand-written samplers.

A scratch copy of the Rezolus snapshot (tests/support.py::make_tree) supplies
the hand-written `blockio/requests` (size histograms beside counters) and
`syscall/latency` (16 latency histograms, no counters map).  Workloads of known
shape must land where the Rust histogram crate puts them: O_DIRECT writes of two
sizes in exactly their buckets, sleeps of a known duration at p50.  The parsers,
the bucket-count check and the acquisition-group rules are tested without BPF.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO, make_tree, require_rezolus
from test_prove import prove as run_prove

from rezolus_sampler.kernel import bpf
from rezolus_sampler.kernel import prove as prove_mod
from rezolus_sampler.kernel.histogram import REZOLUS, Config
from rezolus_sampler.kernel.prove import (
    ProveError,
    parse_histogram_maps,
    parse_histogram_statics,
    parse_metrics,
    read_sampler,
)

_BPF_OK, _BPF_WHY = bpf.bpf_available(require_btf=False)
needs_bpf = pytest.mark.skipif(not _BPF_OK, reason=f"cannot prove here: {_BPF_WHY}")

# Two write sizes whose buckets hold no multiple of 4096, so the 4 KiB-block
# writes other processes make to the machine's disks can never land in them:
# 3584 in [3584, 3839] and 19456 in [18432, 20479].
SIZES = (3584, 19456)
N_WRITES = 200
SLEEP_NS, N_SLEEPS = 4_000_000, 150
# Rezolus' syscall_lut() (src/agent/samplers/syscall/linux/mod.rs) puts
# "clock_nanosleep" | "nanosleep" in group 6 (op = "sleep"); syscall numbers from
# the kernel's tables (x86_64 unistd_64.h, the generic table of arm64).
SLEEP_GROUP = 6
SLEEP_SYSCALLS = {"x86_64": (35, 230), "aarch64": (101, 115)}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    require_rezolus()
    return make_tree(tmp_path_factory.mktemp("hist") / "rezolus")


def sampler(tree: Path, rel: str) -> Path:
    return tree / "src" / "agent" / "samplers" / rel


def variant(tree: Path, rel: str, name: str, file: str, edit) -> Path:
    """A copy of a hand-written sampler beside it, with one file edited."""
    source = sampler(tree, rel)
    target = source.parent / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    text = (target / file).read_text()
    edited = edit(text)
    assert edited != text, "the edit changed nothing"
    (target / file).write_text(edited)
    return target


def histogram(report: dict, key: str) -> dict:
    found = [h for h in report["histograms"] if h["key"] == key]
    assert len(found) == 1, f"{key} not in {[h['key'] for h in report['histograms']]}"
    return found[0]


def bucket_of(value: int) -> dict:
    i = REZOLUS.value_to_index(value)
    return {"index": i, "lower": REZOLUS.index_to_lower_bound(i),
            "upper": REZOLUS.index_to_upper_bound(i)}


# --------------------------------------------------------------------------
# reading the sources (no BPF)
# --------------------------------------------------------------------------


def test_parsers_read_the_hand_written_registrations(tree: Path) -> None:
    blockio = sampler(tree, "blockio/linux/requests")
    assert parse_histogram_maps((blockio / "mod.rs").read_text()) == [
        ("read_size", "BLOCKIO_READ_SIZE", "SIZES_ACQ"),
        ("write_size", "BLOCKIO_WRITE_SIZE", "SIZES_ACQ"),
        ("flush_size", "BLOCKIO_FLUSH_SIZE", "SIZES_ACQ"),
        ("discard_size", "BLOCKIO_DISCARD_SIZE", "SIZES_ACQ"),
    ]
    common = (tree / "src" / "common" / "mod.rs").read_text()
    configs = parse_histogram_statics((blockio / "stats.rs").read_text(), common)
    assert configs == {s: Config(3, 64) for s in (
        "BLOCKIO_READ_SIZE", "BLOCKIO_WRITE_SIZE", "BLOCKIO_FLUSH_SIZE", "BLOCKIO_DISCARD_SIZE")}
    series = parse_metrics((blockio / "stats.rs").read_text())
    assert series["BLOCKIO_WRITE_SIZE"].key == "blockio_size{op=write}"
    assert series["BLOCKIO_WRITE_SIZE"].acq_group == "blockio_requests_sizes"

    latency = sampler(tree, "syscall/linux/latency")
    maps = parse_histogram_maps((latency / "mod.rs").read_text())
    # rustfmt splits one call over lines: `.histogram(\n "filesystem_latency", ...,\n)`
    assert len(maps) == 16 and ("filesystem_latency", "SYSCALL_FILESYSTEM_LATENCY",
                                "LATENCIES_ACQ") in maps
    # `RwLockHistogram::new(HISTOGRAM_GROUPING_POWER, LATENCY_HISTOGRAM_MAX)` with
    # `static LATENCY_HISTOGRAM_MAX: u8 = 64;` in stats.rs
    configs = parse_histogram_statics((latency / "stats.rs").read_text(), common)
    assert len(configs) == 16 and set(configs.values()) == {REZOLUS}
    parsed = read_sampler(latency)
    assert parsed.maps == [] and parsed.userspace_maps == ["syscall_lut"]
    assert parsed.group_problems == []


def test_unresolvable_histogram_parameter_is_refused(tree: Path) -> None:
    bad = variant(tree, "blockio/linux/requests", "requests_unknown_power", "stats.rs",
                  lambda t: t.replace("RwLockHistogram::new(HISTOGRAM_GROUPING_POWER, 64)",
                                      "RwLockHistogram::new(HISTOGRAM_GROUPING_POWER, MAX_POW)", 1))
    with pytest.raises(ProveError, match=r"cannot resolve MAX_POW .* BLOCKIO_READ_SIZE"):
        read_sampler(bad)
    impossible = variant(
        tree, "blockio/linux/requests", "requests_bad_config", "stats.rs",
        lambda t: t.replace("RwLockHistogram::new(HISTOGRAM_GROUPING_POWER, 64)",
                            "RwLockHistogram::new(HISTOGRAM_GROUPING_POWER, 65)", 1),
    )
    with pytest.raises(ProveError, match=r"BLOCKIO_READ_SIZE: RwLockHistogram::new\(3, 65\)"):
        read_sampler(impossible)


def test_acquisition_group_rules(tree: Path) -> None:
    tagged = variant(tree, "blockio/linux/requests", "requests_bad_tag", "stats.rs",
                     lambda t: t.replace('op = "write", unit = "bytes", acq_group = '
                                         '"blockio_requests_sizes"',
                                         'op = "write", unit = "bytes", acq_group = '
                                         '"blockio_requests_counters"', 1))
    assert read_sampler(tagged).group_problems == [
        'BLOCKIO_WRITE_SIZE is registered with SIZES_ACQ ("blockio_requests_sizes") but its '
        "metadata says acq_group = 'blockio_requests_counters'"
    ]
    shared = variant(tree, "blockio/linux/requests", "requests_shared_group", "mod.rs",
                     lambda t: t.replace('&BLOCKIO_WRITE_SIZE, &SIZES_ACQ',
                                         '&BLOCKIO_WRITE_SIZE, &COUNTERS_ACQ', 1))
    problems = read_sampler(shared).group_problems
    assert "COUNTERS_ACQ brackets histogram map write_size and a counters map" in problems
    family = variant(tree, "blockio/linux/requests", "requests_two_families", "stats.rs",
                     lambda t: re.sub(r'name = "blockio_size",(\s*description = "[^"]*",\s*'
                                      r'metadata = \{ op = "flush")',
                                      r'name = "blockio_flush_size",\1', t, count=1))
    assert read_sampler(family).group_problems == [
        "SIZES_ACQ is shared by histogram families blockio_flush_size, blockio_size"
    ]


# --------------------------------------------------------------------------
# in the kernel
# --------------------------------------------------------------------------


@needs_bpf
def test_direct_writes_of_two_sizes_land_in_their_buckets(tree: Path) -> None:
    if shutil.which("losetup") is None:
        pytest.skip("losetup not installed: no block device to write to")
    args = ["--workload", "block", "--count", str(N_WRITES), "--size", ",".join(map(str, SIZES))]
    small, large = (bucket_of(s) for s in SIZES)
    for attempt in range(3):
        report, _ = run_prove(sampler(tree, "blockio/linux/requests"), *args)
        assert report["workload"]["size"] == list(SIZES) and report["errors"] == []
        write = histogram(report, "blockio_size{op=write}")
        assert (write["map"], write["buckets"], write["max_entries"]) == ("write_size", 496, 496)
        # exactly N in each size's bucket: nothing else can produce those sizes
        assert write["bucket_deltas"].get(str(small["index"])) == N_WRITES, write
        assert write["bucket_deltas"].get(str(large["index"])) == N_WRITES, write
        # the counters beside them agree: every written byte is counted
        bytes_written = next(c["delta"] for c in report["counters"]
                             if c["key"] == "blockio_bytes{op=write}")
        assert bytes_written >= N_WRITES * sum(SIZES)
        if write["count"] == 2 * N_WRITES:  # no other write completed meanwhile
            # the crate's percentiles of {N x small, N x large}: rank ceil(q * 2N)
            assert write["p50"] == small
            assert write["p90"] == write["p99"] == write["max"] == large
            return
    pytest.fail(f"other block writes completed during each of 3 runs: {write['bucket_deltas']}")


@needs_bpf
def test_histogram_bucket_count_must_match_the_static(tree: Path) -> None:
    # RwLockHistogram::new(3, 32) has 240 buckets; the BPF map keeps 496
    bad = variant(tree, "blockio/linux/requests", "requests_short_hist", "stats.rs",
                  lambda t: re.sub(r"(BLOCKIO_WRITE_SIZE: RwLockHistogram =\s*"
                                   r"RwLockHistogram::new\(HISTOGRAM_GROUPING_POWER, )64",
                                   r"\g<1>32", t))
    proc = subprocess.run(
        [sys.executable, "-m", "rezolus_sampler.kernel.prove", str(bad), "--json",
         "--workload", "block", "--count", "8"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    if proc.returncode == 77:
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["errors"] == [
        "histogram map write_size: Rezolus reads it as BLOCKIO_WRITE_SIZE = "
        "RwLockHistogram::new(3, 32), 240 buckets, but the map holds 496 u64"
    ]
    assert histogram(report, "blockio_size{op=write}")["buckets"] == 240


@needs_bpf
def test_sleep_latency_p50_is_the_sleep_within_bucket_error(tree: Path) -> None:
    """syscall/latency registers only histograms; its userspace fills syscall_lut,
    which this test does as Rezolus' syscall_lut() would for the sleep group."""
    arch = prove_mod.host_arch()
    if arch not in SLEEP_SYSCALLS:
        pytest.skip(f"no syscall numbers for {arch}")

    def fill_lut(obj: bpf.BpfObject) -> None:
        for nr in SLEEP_SYSCALLS[arch]:
            obj.update_u64("syscall_lut", nr, SLEEP_GROUP)

    command = (f"python3 -c 'import time\nfor _ in range({N_SLEEPS}): "
               f"time.sleep({SLEEP_NS / 1e9})'")
    try:
        report = prove_mod.prove(sampler(tree, "syscall/linux/latency"), command=command,
                                 on_loaded=fill_lut)
    except prove_mod.CannotProve as e:
        pytest.skip(str(e))
    assert report["errors"] == [] and report["counters"] == []
    sleep = histogram(report, "syscall_latency{op=sleep}")
    assert sleep["count"] >= N_SLEEPS
    # a sleep never returns early; the p50 bucket must reach the requested time and
    # start within the histogram's relative error above it
    p50 = sleep["p50"]
    assert p50["upper"] >= SLEEP_NS, sleep
    assert p50["lower"] <= SLEEP_NS * (1 + REZOLUS.relative_error), sleep
    assert any("syscall_lut" in n for n in report["notes"])


def test_several_sizes_only_for_the_block_workload() -> None:
    assert prove_mod.size("4096") == 4096
    assert prove_mod.size("3584,19456") == [3584, 19456]
    work, _ = prove_mod.workload_for("block", None, 3, [3584, 19456])
    assert (work.count, work.size) == (3, [3584, 19456])
    with pytest.raises(prove_mod.UsageError, match="udp workload takes one --size"):
        prove_mod.workload_for("udp", None, 3, [512, 1024])
