"""Generated histogram samplers, proven in the kernel (issue 11).

The example answer files `examples/blockio_request_sizes.yml`,
`examples/syscall_total_latency.yml` and `examples/scheduler_runqueue_wait.yml`
are rendered into a scratch copy of the Rezolus snapshot and proven with
`rezolus-sampler prove` under the workloads tests/test_histogram_prove.py uses
for the hand-written `blockio/requests` and `syscall/latency`:

- O_DIRECT writes of two sizes land exactly in their buckets (counts exact);
- sleeps of a known duration put the latency histogram's p50 within the
  histogram's relative error (kernel/histogram.py) of the sleep;
- the run-queue wait histogram records at least one wait per new task, with
  plausible percentiles.

The tp_btf samplers are proven in both twins (`--force-raw` loads the raw_tp
ones). Everything skips, with the reason, without root, BPF or a Rezolus tree.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from support import REPO, load_answers, make_tree, require_rezolus, write_sampler
from test_histogram_prove import (
    N_SLEEPS,
    N_WRITES,
    SIZES,
    SLEEP_NS,
    SLEEP_SYSCALLS,
    bucket_of,
    histogram,
)

from rezolus_sampler.kernel import bpf
from rezolus_sampler.kernel import prove as prove_mod
from rezolus_sampler.kernel.histogram import REZOLUS

_BPF_OK, _BPF_WHY = bpf.bpf_available(require_btf=False)
needs_bpf = pytest.mark.skipif(not _BPF_OK, reason=f"cannot prove here: {_BPF_WHY}")
TWINS = ["tp_btf", "raw_tp"]
N_FORK = 100
N_GETPPID = 50_000


def example(name: str) -> dict:
    return load_answers(REPO / "examples" / f"{name}.yml")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    require_rezolus()
    return make_tree(tmp_path_factory.mktemp("gen_hist") / "rezolus")


@pytest.fixture(scope="module")
def samplers(tree: Path) -> dict[str, Path]:
    return {name: write_sampler(tree, example(name))
            for name in ("blockio_request_sizes", "syscall_total_latency",
                         "scheduler_runqueue_wait")}


def run_prove(directory: Path, **kwargs) -> dict:
    try:
        report = prove_mod.prove(directory, **kwargs)
    except prove_mod.CannotProve as err:
        pytest.skip(str(err))
    assert report["errors"] == [], report["errors"]
    return report


def needs_twin(twin: str) -> None:
    """tp_btf programs load only with the running kernel's own BTF."""
    if twin == "tp_btf" and not prove_mod.BTF_PATH.exists():
        pytest.skip(f"no {prove_mod.BTF_PATH}: only the raw_tp twins can load here")


def check_twins(report: dict, twin: str) -> None:
    suffix = {"tp_btf": "_btf", "raw_tp": "_raw"}[twin]
    assert report["twins"] == twin
    assert report["loaded"] and all(n.endswith(suffix) for n in report["loaded"])
    assert all(p["section"].startswith(f"{twin}/") for p in report["programs"])
    assert all(p["verified_insns"] > 0 for p in report["programs"])


def within_error(bucket: dict, value: int, error: float) -> bool:
    """The bucket reaches `value` and starts within the relative error above it."""
    return bucket["upper"] >= value and bucket["lower"] <= value * (1 + error)


# --------------------------------------------------------------------------
# block request sizes
# --------------------------------------------------------------------------


@needs_bpf
@pytest.mark.parametrize("twin", TWINS)
def test_direct_writes_of_two_sizes_land_in_their_buckets(samplers, twin: str) -> None:
    if shutil.which("losetup") is None:
        pytest.skip("losetup not installed: no block device to write to")
    needs_twin(twin)
    small, large = (bucket_of(s) for s in SIZES)
    write = {}
    for _ in range(3):
        report = run_prove(samplers["blockio_request_sizes"], workload="block", count=N_WRITES,
                           size=list(SIZES), force_raw=twin == "raw_tp")
        check_twins(report, twin)
        assert [h["key"] for h in report["histograms"]] == [
            f"blockio_sizes_bytes{{op={op}}}" for op in ("read", "write", "flush", "discard")]
        assert all(h["buckets"] == h["max_entries"] == REZOLUS.total_buckets
                   for h in report["histograms"])
        write = histogram(report, "blockio_sizes_bytes{op=write}")
        # exactly N in each size's bucket: no other writer makes those sizes
        assert write["bucket_deltas"].get(str(small["index"])) == N_WRITES, write
        assert write["bucket_deltas"].get(str(large["index"])) == N_WRITES, write
        # nothing written is recorded as a read, a flush or a discard of those sizes
        for op in ("read", "flush", "discard"):
            other = histogram(report, f"blockio_sizes_bytes{{op={op}}}")["bucket_deltas"]
            assert str(small["index"]) not in other and str(large["index"]) not in other, op
        if write["count"] == 2 * N_WRITES:  # no other write completed meanwhile
            assert write["p50"] == small
            assert write["p90"] == write["p99"] == write["max"] == large
            return
    pytest.fail(f"other block writes completed during each of 3 runs: {write['bucket_deltas']}")


# --------------------------------------------------------------------------
# system call latency
# --------------------------------------------------------------------------


def sleep_command() -> str:
    return (f"{sys.executable} -c 'import time\nfor _ in range({N_SLEEPS}): "
            f"time.sleep({SLEEP_NS / 1e9})'")


def sleep_only(answers: dict) -> dict:
    """The example with its record limited to the sleep system calls, so the
    workload's sleeps dominate the distribution (the example records every
    system call of every process)."""
    arch = prove_mod.host_arch()
    if arch not in SLEEP_SYSCALLS:
        pytest.skip(f"no syscall numbers for {arch}")
    ids = " || ".join(f"args->id == {nr}" for nr in SLEEP_SYSCALLS[arch])
    spec = dict(answers, sampler="sleep_latency",
                description="Records the latency of the sleep system calls")
    (family,) = answers["histograms"]
    record = dict(family["records"][0], when=ids)
    spec["histograms"] = [dict(family, name="syscall_sleep_latency", records=[record])]
    return spec


@needs_bpf
def test_sleeps_put_the_latency_p50_at_the_sleep(tree: Path) -> None:
    directory = write_sampler(tree, sleep_only(example("syscall_total_latency")))
    sleep = {}
    for _ in range(3):
        report = run_prove(directory, command=sleep_command())
        assert report["twins"] is None and len(report["programs"]) == 2
        sleep = histogram(report, "syscall_sleep_latency")
        assert sleep["count"] >= N_SLEEPS, sleep
        if within_error(sleep["p50"], SLEEP_NS, sleep["relative_error"]):
            assert sleep["relative_error"] == REZOLUS.relative_error
            return
    pytest.fail(f"p50 {sleep['p50']} of {SLEEP_NS} ns sleeps on each of 3 runs: {sleep}")


@needs_bpf
def test_total_latency_holds_every_sleep_and_every_fast_call(samplers) -> None:
    directory = samplers["syscall_total_latency"]
    # the sleeps: every one lands in a bucket reaching the sleep and starting
    # within the relative error above it (other processes add their own calls)
    report = run_prove(directory, command=sleep_command())
    total = histogram(report, "syscall_total_latency")
    error = total["relative_error"]
    near = sum(n for i, n in total["bucket_deltas"].items()
               if within_error({"lower": REZOLUS.index_to_lower_bound(int(i)),
                                "upper": REZOLUS.index_to_upper_bound(int(i))}, SLEEP_NS, error))
    assert near >= N_SLEEPS * 0.9, total
    # fast calls: getppid() dominates, so the p50 is a fast call's latency
    report = run_prove(directory, workload="syscalls", count=N_GETPPID)
    total = histogram(report, "syscall_total_latency")
    assert total["count"] >= N_GETPPID, total
    assert total["p50"]["upper"] < 100_000, total  # a getppid() takes far less than 100 us
    runs = {p["name"]: p["run_cnt"] for p in report["programs"]}
    assert runs["sys_exit"] >= total["count"], (runs, total["count"])


# --------------------------------------------------------------------------
# run-queue wait
# --------------------------------------------------------------------------


@needs_bpf
@pytest.mark.parametrize("twin", TWINS)
def test_runqueue_wait_records_every_new_task(samplers, twin: str) -> None:
    needs_twin(twin)
    report = run_prove(samplers["scheduler_runqueue_wait"], workload="fork", count=N_FORK,
                       force_raw=twin == "raw_tp")
    check_twins(report, twin)
    wait = histogram(report, "scheduler_wait_runqueue")
    runs = {p["name"].rsplit("_", 1)[0]: p["run_cnt"] for p in report["programs"]}
    # each new task is stamped at sched_wakeup_new and recorded when first switched in
    assert runs["sched_wakeup_new"] >= N_FORK and wait["count"] >= N_FORK, (runs, wait)
    assert wait["count"] <= runs["sched_switch"], (runs, wait)  # at most one record per switch
    # plausible on an idle-ish machine: a run-queue wait is short
    assert 0 < wait["p50"]["upper"] < 100_000_000, wait  # < 100 ms
    assert wait["p99"]["upper"] < 2_000_000_000, wait  # < 2 s
