"""rezolus_sampler/kernel/prove.py against the running kernel: counts, label routing, twin
selection, the stride rule, cleanup and --write-doc.

Every example, the default sampler and the default spec in each attach style
and layout is rendered into a fresh Rezolus tree and proven through the real
command line (``rezolus-sampler prove DIR --json``).  BPF tests skip unless
running as root on a kernel that accepts BPF; everything skips without a
Rezolus checkout.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import tempfile
import sys
import time
from pathlib import Path

import pytest
from support import (
    EXAMPLES,
    REPO,
    default_answers,
    load_answers,
    make_tree,
    render,
    require_rezolus,
    sampler_path,
)

from rezolus_sampler.kernel import bpf
from rezolus_sampler.kernel.prove import (
    BEGIN,
    END,
    SYS_GETPPID,
    default_workload,
    host_arch,
    parse_counter_maps,
    parse_metrics,
    parse_twins,
    read_sampler,
)

_BPF_OK, _BPF_WHY = bpf.bpf_available()
needs_bpf = pytest.mark.skipif(not _BPF_OK, reason=f"cannot prove here: {_BPF_WHY}")
STATS = Path("/proc/sys/kernel/bpf_stats_enabled")

N_FORK = 200
N_SYSCALLS = 200_000
N_UDP, S_UDP = 20_000, 512
N_BLOCK = 256


# --------------------------------------------------------------------------
# rendering (one fresh tree per sampler, shared by the tests of this module)
# --------------------------------------------------------------------------


def _default_in(attach: str, layout: str) -> dict:
    answers = default_answers() | {"attach": attach, "layout": layout}
    if attach == "tracepoint":
        # classic tracepoints take no argument names, and sched_process_free is
        # defined through the sched_process_template event class
        answers["tracepoints"] = [
            "sched:sched_process_fork",
            "sched:sched_process_exec",
            "sched:sched_process_free@sched_process_template",
        ]
    return answers


CASES = {
    "default": (lambda: default_answers(), False),
    "blockio_ops": (lambda: load_answers(REPO / "examples" / "blockio_ops.yml"), False),
    "network_traffic": (lambda: load_answers(REPO / "examples" / "network_traffic.yml"), True),
    "syscall_outcomes": (lambda: load_answers(REPO / "examples" / "syscall_outcomes.yml"), False),
}
for _attach in ("tp_btf", "raw_tp", "tracepoint"):
    for _layout in ("totals", "per_cpu"):
        if (_attach, _layout) != ("tp_btf", "totals"):  # that one is "default"
            CASES[f"{_attach}-{_layout}"] = (lambda a=_attach, y=_layout: _default_in(a, y), False)

# examples without a test of their own below: proven with whatever workload fits
OTHER_EXAMPLES = [e.stem for e in EXAMPLES if e.stem not in CASES]
for _example in EXAMPLES:
    if _example.stem in OTHER_EXAMPLES:  # overwrite: an example may replace a sampler
        CASES[_example.stem] = (lambda e=_example: load_answers(e), True)

_rendered: dict[str, Path] = {}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory):
    require_rezolus()

    def get(case: str) -> Path:
        if case not in _rendered:
            answers_fn, overwrite = CASES[case]
            answers = answers_fn()
            tree = make_tree(tmp_path_factory.mktemp(case) / "rezolus")
            render(tree, answers, overwrite=overwrite)
            _rendered[case] = sampler_path(tree, answers)
        return _rendered[case]

    return get


# --------------------------------------------------------------------------
# running the command, and checking nothing is left behind
# --------------------------------------------------------------------------


def _bpftool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bpftool", *args], capture_output=True, text=True)


def _leftovers(prog_ids: list[int]) -> list[str]:
    links = json.loads(_bpftool("-j", "link", "show").stdout or "[]")
    left = [
        f"link {link['id']} -> prog {link['prog_id']}"
        for link in links
        if link.get("prog_id") in prog_ids
    ]
    left += [
        f"prog {pid}"
        for pid in prog_ids
        if _bpftool("prog", "show", "id", str(pid)).returncode == 0
    ]
    return left


def _assert_nothing_left(prog_ids: list[int]) -> None:
    """No link to, and (after the kernel's deferred free) no trace of, our programs."""
    if not prog_ids or shutil.which("bpftool") is None:
        return
    for _ in range(40):  # the kernel frees released programs after an RCU grace period
        left = _leftovers(prog_ids)
        if not left:
            return
        time.sleep(0.05)
    assert not left, f"left behind: {left}"


def _assert_stats_restored(before: str) -> None:
    # other processes may hold stats on for a moment; the value must come back
    for _ in range(20):
        if STATS.read_text().strip() == before:
            return
        time.sleep(0.05)
    assert STATS.read_text().strip() == before, "bpf_stats_enabled not restored"


def prove(directory: Path, *args: str, expect: int = 0) -> tuple[dict | None, str]:
    """Run the CLI with --json; returns (report or None, stderr)."""
    stats = STATS.read_text().strip()
    proc = subprocess.run(
        [sys.executable, "-m", "rezolus_sampler.kernel.prove", str(directory), "--json", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode == 77:
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == expect, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(proc.stdout) if proc.returncode == 0 else None
    _assert_nothing_left([p["id"] for p in report["programs"]] if report else [])
    _assert_stats_restored(stats)
    return report, proc.stderr


def delta(report: dict, key: str) -> int:
    matches = [c["delta"] for c in report["counters"] if c["key"] == key]
    assert len(matches) == 1, f"{key} not in {[c['key'] for c in report['counters']]}"
    return matches[0]


def program(report: dict, suffix_or_name: str) -> dict:
    return next(p for p in report["programs"] if p["name"].startswith(suffix_or_name))


# --------------------------------------------------------------------------
# parsers (no BPF needed)
# --------------------------------------------------------------------------


def test_parsers_read_the_rendered_sources(rendered) -> None:
    d = rendered("blockio_ops")
    mod_rs, stats_rs = (d / "mod.rs").read_text(), (d / "stats.rs").read_text()
    maps = {m.map: m for m in parse_counter_maps(mod_rs)}
    assert [(m, len(s.statics), s.width, s.per_cpu) for m, s in maps.items()] == [
        ("counters", 12, 16, False),
        ("errors", 16, 16, False),
    ]
    assert maps["counters"].statics[5] == "BLOCKIO_OPS_BYTES_WRITE"
    assert parse_twins(mod_rs) == (
        ["block_rq_complete_raw", "block_rq_requeue_raw"],
        ["block_rq_complete_btf", "block_rq_requeue_btf"],
    )
    series = parse_metrics(stats_rs)
    assert (
        series["BLOCKIO_OPS_ERRORS_WRITE_NOSPC"].key == "blockio_ops_errors{op=write, status=nospc}"
    )
    assert series["BPF_RUN_TIME"].labels == {}
    per_cpu = parse_counter_maps((rendered("syscall_outcomes") / "mod.rs").read_text())
    assert [(m.map, len(m.statics), m.per_cpu) for m in per_cpu] == [("counters", 6, True)]
    assert parse_twins((rendered("syscall_outcomes") / "mod.rs").read_text()) is None


# --------------------------------------------------------------------------
# counts and routing
# --------------------------------------------------------------------------


def _check_fork_exec(report: dict, n: int) -> None:
    fork = delta(report, "scheduler_processes_events{event=fork}")
    assert fork >= n and delta(report, "scheduler_processes_events{event=exec}") >= n
    assert delta(report, "scheduler_processes_events{event=free}") >= 0
    # nothing double-counted: below 2N (two programs per hook would double it), and
    # each run of the fork program added exactly one to the fork slot (the run
    # count window brackets the counter window by microseconds)
    assert fork < 2 * n, f"fork moved by {fork} for {n} forks: double counting?"
    runs = program(report, "sched_process_fork")["run_cnt"]
    assert 0 <= runs - fork <= 10, f"fork slot {fork} vs {runs} program runs"
    for c in report["counters"]:
        assert sum(c["per_cpu"]) == c["delta"]


@needs_bpf
def test_default_sampler_counts_fork_exec_with_btf_twins(rendered) -> None:
    report, _ = prove(rendered("default"), "--count", str(N_FORK))
    assert report["workload"]["name"] == "fork" and report["workload"]["count"] == N_FORK
    assert report["twins"] == "tp_btf"
    assert report["loaded"] == [
        "sched_process_fork_btf",
        "sched_process_exec_btf",
        "sched_process_free_btf",
    ]
    assert sorted(report["disabled"]) == sorted(n.replace("_btf", "_raw") for n in report["loaded"])
    assert all(p["section"].startswith("tp_btf/") for p in report["programs"])
    assert all(p["verified_insns"] > 0 and p["xlated_insns"] > 0 for p in report["programs"])
    assert program(report, "sched_process_fork")["ns_per_event"] > 0
    _check_fork_exec(report, N_FORK)


@needs_bpf
def test_force_raw_loads_exactly_the_raw_twins(rendered) -> None:
    report, _ = prove(rendered("default"), "--count", str(N_FORK), "--force-raw")
    assert report["twins"] == "raw_tp"
    assert report["loaded"] == [
        "sched_process_fork_raw",
        "sched_process_exec_raw",
        "sched_process_free_raw",
    ]
    assert all(p["section"].startswith("raw_tp/") for p in report["programs"])
    _check_fork_exec(report, N_FORK)


@needs_bpf
@pytest.mark.parametrize("case", [c for c in CASES if "-" in c])
def test_default_spec_in_every_attach_style_and_layout(rendered, case: str) -> None:
    attach, layout = case.split("-")
    report, _ = prove(rendered(case), "--count", str(N_FORK))
    assert [m["layout"] for m in report["maps"]] == [layout]
    assert report["twins"] == ("tp_btf" if attach == "tp_btf" else None)
    assert all(p["section"].startswith(attach + "/") for p in report["programs"])
    assert len(report["programs"]) == 3
    _check_fork_exec(report, N_FORK)


def _quiet_run(directory: Path, args: list[str], check, noisy) -> dict:
    """Prove up to three times: `check` must hold on every run, and the slots
    `noisy` returns (background activity we cannot filter: other processes'
    syscalls, the root filesystem's discards) must be quiet on at least one."""
    problems: list[str] = []
    for _ in range(3):
        report, _ = prove(directory, *args)
        check(report)
        problems = noisy(report)
        if not problems:
            return report
    pytest.fail(f"noise bound exceeded on three runs: {problems}")


@needs_bpf
def test_syscall_outcomes_routes_getppid_to_its_lane(rendered) -> None:
    lane = SYS_GETPPID[host_arch()] & 3

    def check(report: dict) -> None:
        assert report["workload"]["name"] == "syscalls"
        assert delta(report, f"syscall_outcomes_entries{{lane={lane}}}") >= N_SYSCALLS
        assert delta(report, "syscall_outcomes_results{result=ok}") >= N_SYSCALLS
        assert all(
            c["per_cpu_layout"] and len(c["per_cpu"]) == report["possible_cpus"]
            for c in report["counters"]
        )

    def noisy(report: dict) -> list[str]:
        # label routing: the other lanes see only background syscalls
        keys = [f"syscall_outcomes_entries{{lane={other}}}" for other in {0, 1, 2, 3} - {lane}]
        keys.append("syscall_outcomes_results{result=error}")
        return [
            f"{k} moved by {delta(report, k)}" for k in keys if delta(report, k) >= N_SYSCALLS / 10
        ]

    _quiet_run(rendered("syscall_outcomes"), ["--count", str(N_SYSCALLS)], check, noisy)


@needs_bpf
def test_network_traffic_counts_loopback_udp(rendered) -> None:
    report, _ = prove(rendered("network_traffic"), "--count", str(N_UDP), "--size", str(S_UDP))
    assert report["workload"] | {"description": "", "seconds": 0} == {
        "name": "udp",
        "count": N_UDP,
        "size": S_UDP,
        "description": "",
        "seconds": 0,
    }
    for direction in ("receive", "transmit"):
        assert delta(report, f"network_packets{{direction={direction}}}") >= N_UDP
        assert delta(report, f"network_bytes{{direction={direction}}}") >= N_UDP * S_UDP


@needs_bpf
def test_blockio_ops_counts_direct_writes(rendered) -> None:
    if shutil.which("losetup") is None:
        pytest.skip("losetup not installed: no block device to write to")

    def check(report: dict) -> None:
        assert report["workload"]["name"] == "block"
        assert report["twins"] == "tp_btf" and all(n.endswith("_btf") for n in report["loaded"])
        assert delta(report, "blockio_ops_operations{op=write}") >= N_BLOCK
        assert delta(report, "blockio_ops_bytes{op=write}") >= N_BLOCK * 4096

    def noisy(report: dict) -> list[str]:
        keys = [f"blockio_ops_operations{{op={op}}}" for op in ("read", "discard")]
        return [
            f"{k} moved by {delta(report, k)}" for k in keys if delta(report, k) >= N_BLOCK / 10
        ]

    _quiet_run(rendered("blockio_ops"), ["--count", str(N_BLOCK)], check, noisy)


@needs_bpf
@pytest.mark.parametrize("example", OTHER_EXAMPLES)
def test_every_other_example_loads_attaches_and_reads(rendered, example: str) -> None:
    directory = rendered(example)
    if default_workload(read_sampler(directory).categories) is None:
        report, _ = prove(directory, "--workload", "fork", "--count", "50")  # any activity
    else:
        report, _ = prove(directory, "--count", "64")
    assert report["errors"] == [] and report["programs"]
    assert all(p["verified_insns"] > 0 for p in report["programs"])
    assert all(m["values"] == m["width"] * report["max_cpus"] for m in report["maps"])


# --------------------------------------------------------------------------
# refusals: twins, stride, permissions
# --------------------------------------------------------------------------


def _variant(source: Path, name: str, edit) -> Path:
    """A copy of a rendered sampler beside it, with mod.rs edited."""
    target = source.parent / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    (target / "mod.rs").write_text(edit((target / "mod.rs").read_text()))
    return target


@needs_bpf
def test_disabled_name_not_in_object_is_refused(rendered) -> None:
    bad = _variant(
        rendered("default"),
        "processes_badtwin",
        lambda t: t.replace('"sched_process_exec_raw"', '"sched_process_exec_rawx"'),
    )
    _, err = prove(bad, "--count", "1", expect=1)
    assert "sched_process_exec_rawx" in err and "not in the object" in err


@needs_bpf
def test_vector_length_that_breaks_the_stride_is_an_error(rendered) -> None:
    # 9 statics -> Rezolus would read with W = 16, but the map holds 1024 x 8
    extra = "        &SCHEDULER_PROCESSES_EVENTS_FREE,\n" * 6
    bad = _variant(
        rendered("default"),
        "processes_badwidth",
        lambda t: t.replace(
            "        &SCHEDULER_PROCESSES_EVENTS_FREE,\n",
            "        &SCHEDULER_PROCESSES_EVENTS_FREE,\n" + extra,
            1,
        ),
    )
    readme = bad / "README.md"
    readme.write_text(f"{BEGIN}\nold\n{END}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "rezolus_sampler.kernel.prove", str(bad), "--count", "1", "--write-doc"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stderr
    assert re.search(r"W = ceil\(9\*8/64\)\*8 = 16 .* the map holds 8 u64 per CPU", proc.stdout), (
        proc.stdout
    )
    assert (
        "scheduler_processes_events{event=fork}" in proc.stdout
    )  # the text table still shows the reads
    assert "not written" in proc.stderr and readme.read_text() == f"{BEGIN}\nold\n{END}\n"


@needs_bpf
def test_unknown_category_needs_a_command(rendered) -> None:
    other = _variant(
        rendered("default"), "processes_irq", lambda t: t.replace("//! * `sched:", "//! * `irq:")
    )
    proc = subprocess.run(
        [sys.executable, "-m", "rezolus_sampler.kernel.prove", str(other)], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "--command" in proc.stderr, proc.stderr
    report, _ = prove(other, "--command", "/bin/true")
    assert report["workload"]["name"] == "command"
    assert delta(report, "scheduler_processes_events{event=exec}") >= 1


@needs_bpf
def test_non_root_cannot_prove(rendered, tmp_path_factory) -> None:
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 to run as an unprivileged user")
    # `nobody` cannot read a checkout under a 0700 directory: give it its own copy of the package
    readable = Path(tempfile.mkdtemp(prefix="prove-nobody-"))
    readable.chmod(0o755)
    package = readable / "rezolus_sampler"
    shutil.copytree(REPO / "rezolus_sampler", package, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [package, *package.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    try:
        proc = subprocess.run(
            [python, "-m", "rezolus_sampler.kernel.prove", str(rendered("default"))],
            cwd=readable,
            capture_output=True,
            text=True,
            user=65534,
            group=65534,
        )
    finally:
        shutil.rmtree(readable)
    assert proc.returncode == 77, proc.stderr
    assert proc.stderr.startswith("cannot prove: ")


@needs_bpf
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_leaves_nothing_attached(rendered, sig: signal.Signals) -> None:
    stats = STATS.read_text().strip()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rezolus_sampler.kernel.prove",
            str(rendered("default")),
            "--command",
            "sleep 30",
            "--announce",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        ids = [int(x) for x in line.split(":")[1].split()]
        links = json.loads(_bpftool("-j", "link", "show").stdout or "[]")
        assert {link["prog_id"] for link in links} >= set(ids), "programs were not attached"
        proc.send_signal(sig)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (130, 128 + sig), proc.stderr.read()
    _assert_nothing_left(ids)
    _assert_stats_restored(stats)


# --------------------------------------------------------------------------
# --write-doc
# --------------------------------------------------------------------------


@needs_bpf
def test_write_doc_replaces_only_between_markers(rendered) -> None:
    readme = rendered("network_traffic") / "README.md"
    readme.write_text(
        f"# network_traffic\n\nkept above\n\n{BEGIN}\nNot measured yet.\n{END}\n\nkept below\n"
    )
    report, _ = prove(readme.parent, "--count", "500", "--write-doc")
    text = readme.read_text()
    assert text.startswith("# network_traffic\n\nkept above\n\n" + BEGIN + "\n")
    assert text.endswith(END + "\n\nkept below\n")
    inside = text.split(BEGIN)[1].split(END)[0]
    assert "Not measured yet" not in inside
    assert report["kernel"] in inside and "--write-doc" in inside and "500 UDP datagrams" in inside
    for p in report["programs"]:
        assert (
            f"| `{p['name']}` | `{p['section']}` | {p['verified_insns']} | "
            f"{p['xlated_insns']} | {p['run_cnt']} |" in inside
        )
    assert not list(readme.parent.glob(".README.md.*")), "temporary file left behind"


@needs_bpf
def test_write_doc_without_markers_or_readme_writes_nothing(rendered) -> None:
    directory = rendered("network_traffic")
    readme = directory / "README.md"
    readme.write_text("# no markers here\n")
    _, err = prove(directory, "--count", "10", "--write-doc", expect=1)
    assert "lacks the markers" in err and readme.read_text() == "# no markers here\n"
    readme.unlink()
    _, err = prove(directory, "--count", "10", "--write-doc", expect=1)
    assert "does not exist" in err and not readme.exists()
