"""Tests for rezolus_sampler/kernel/bpf.py: compile with Rezolus' flags, load, attach to
tp_btf/sys_enter, count through an mmapped per-CPU bank, read kernel stats,
and leave nothing behind.

BPF tests skip (with the reason) unless running as root on a kernel that
accepts BPF.  Rezolus is found through $REZOLUS_DIR, else ../shared/rezolus
next to this repository.
"""

from __future__ import annotations

import array
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rezolus_sampler.kernel import bpf  # noqa: E402

REZOLUS = Path(os.environ.get("REZOLUS_DIR", Path(__file__).parents[1] / ".." / "shared" / "rezolus")).resolve()
ARCH = "aarch64" if os.uname().machine == "aarch64" else "x86_64"
WIDTH = 8
MAX_CPUS = 1024
N = 20_000

_HEADERS = """\
#include <vmlinux.h>
#include "../../../agent/bpf/helpers.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
"""

COUNTER_SRC = _HEADERS + """
#define WIDTH 8
#define MAX_CPUS 1024

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, u32);
    __type(value, u64);
    __uint(max_entries, MAX_CPUS * WIDTH);
} loader_test_bank SEC(".maps");

SEC("tp_btf/sys_enter")
int BPF_PROG(loader_test_enter, struct pt_regs* regs, long id) {
    array_incr(&loader_test_bank, WIDTH * bpf_get_smp_processor_id() + 3);
    return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(loader_test_unused, struct pt_regs* regs, long id) {
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""

# dereferences a hash-map lookup without a NULL check: compiles, fails
# verification (recent kernels prove constant in-range ARRAY lookups non-NULL,
# so a hash map is used)
BAD_SRC = _HEADERS + """
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __type(key, u32);
    __type(value, u64);
    __uint(max_entries, 1);
} loader_test_bad_map SEC(".maps");

SEC("tp_btf/sys_enter")
int BPF_PROG(loader_test_bad, struct pt_regs* regs, long id) {
    u32 key = 0;
    u64* v = bpf_map_lookup_elem(&loader_test_bad_map, &key);
    *v += 1;
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""

needs_rezolus = pytest.mark.skipif(
    not (REZOLUS / "src" / "agent" / "bpf" / "helpers.h").is_file(),
    reason=f"Rezolus source not found at {REZOLUS} (set REZOLUS_DIR)",
)
needs_clang = pytest.mark.skipif(
    not (shutil.which("clang") or shutil.which("clang-14")), reason="clang not installed"
)
_BPF_OK, _BPF_WHY = bpf.bpf_available()
needs_bpf = pytest.mark.skipif(not _BPF_OK, reason=f"BPF unavailable: {_BPF_WHY}")


def _compile(tmp: Path, name: str, src: str) -> Path:
    c = tmp / f"{name}.bpf.c"
    c.write_text(src)
    obj = tmp / f"{name}.bpf.o"
    bpf.compile_bpf(c, obj, REZOLUS, ARCH)
    return obj


@pytest.fixture(scope="module")
def counter_obj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (REZOLUS / "src" / "agent" / "bpf" / "helpers.h").is_file():
        pytest.skip(f"Rezolus source not found at {REZOLUS} (set REZOLUS_DIR)")
    return _compile(tmp_path_factory.mktemp("bpf"), "counter", COUNTER_SRC)


def _syscalls(n: int) -> None:
    for _ in range(n):
        os.getppid()  # glibc does not cache getppid: one syscall each


def _bpftool_json(*args: str) -> list[dict]:
    out = subprocess.run(["bpftool", "--json", *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out or "[]")


def _wait_prog_gone(prog_ids: set[int], timeout: float = 10.0) -> set[int]:
    """Program ids still present after waiting (trampoline programs are freed
    after an RCU grace period, so this takes a few hundred ms)."""
    deadline = time.monotonic() + timeout
    while True:
        left = prog_ids & {p["id"] for p in _bpftool_json("prog", "show")}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


# --------------------------------------------------------------------------
# no root needed
# --------------------------------------------------------------------------


def test_clang_args_match_rezolus_flags() -> None:
    args = bpf.clang_args(Path("/r"), "x86_64")
    assert args == [
        "-g", "-O2", "-target", "bpf", "-c", "-fno-stack-protector",
        "-I/r/src/agent/bpf/x86_64", "-fno-unwind-tables", "-D__TARGET_ARCH_x86", "-Wall", "-Werror",
    ]
    arm = bpf.clang_args(Path("/r"), "aarch64")
    assert "-I/r/src/agent/bpf/aarch64" in arm and "-D__TARGET_ARCH_arm64" in arm
    with pytest.raises(ValueError):
        bpf.clang_args(Path("/r"), "riscv64")


def test_possible_cpus_parses_ranges(tmp_path: Path) -> None:
    f = tmp_path / "possible"
    for text, expected in [("0\n", 1), ("0-1\n", 2), ("0-3,8-11\n", 12), ("0,2,5\n", 6)]:
        f.write_text(text)
        assert bpf.possible_cpus(str(f)) == expected
    assert bpf.possible_cpus() >= 1


def test_read_bank_sum_uses_cpu_stride() -> None:
    ncpus = 4
    values = array.array("Q", [0] * (ncpus * WIDTH))
    for cpu in range(ncpus):
        values[cpu * WIDTH + 2] = cpu + 1  # slot 2: 1+2+3+4
        values[cpu * WIDTH + 3] = 100
    view = memoryview(values)
    assert bpf.read_bank_sum(view, WIDTH, 2, ncpus) == 10
    assert bpf.read_bank_sum(view, WIDTH, 3, ncpus) == 400
    assert bpf.read_bank_sum(view, WIDTH, 3, 2) == 200
    with pytest.raises(ValueError):
        bpf.read_bank_sum(view, WIDTH, WIDTH, ncpus)


@needs_rezolus
@needs_clang
def test_compile_error_includes_clang_stderr(tmp_path: Path) -> None:
    src = tmp_path / "broken.bpf.c"
    src.write_text(_HEADERS + "int broken(void) { return undefined_symbol_xyz; }\n")
    with pytest.raises(bpf.BpfError) as exc:
        bpf.compile_bpf(src, tmp_path / "broken.o", REZOLUS, ARCH)
    assert "undefined_symbol_xyz" in str(exc.value)


# --------------------------------------------------------------------------
# root + BPF
# --------------------------------------------------------------------------


@needs_bpf
def test_load_attach_count_and_stats(counter_obj: Path) -> None:
    ncpus = bpf.possible_cpus()
    with bpf.bpf_stats_enabled(), bpf.BpfObject.open(counter_obj) as obj:
        assert sorted(obj.program_names()) == ["loader_test_enter", "loader_test_unused"]
        assert obj.section_name("loader_test_enter") == "tp_btf/sys_enter"
        obj.set_autoload("loader_test_unused", False)
        obj.load()
        assert obj.attach_all() == ["loader_test_enter"]

        info = obj.map_info("loader_test_bank")
        assert (info.type, info.key_size, info.value_size, info.max_entries) == (
            bpf.BPF_MAP_TYPE_ARRAY, 4, 8, MAX_CPUS * WIDTH,
        )
        assert info.mmapable

        view = bpf.mmap_u64_array(obj.map_fd("loader_test_bank"), MAX_CPUS * WIDTH)
        before = bpf.read_bank_sum(view, WIDTH, 3, ncpus)
        p0 = obj.prog_info("loader_test_enter")
        _syscalls(N)
        p1 = obj.prog_info("loader_test_enter")
        after = bpf.read_bank_sum(view, WIDTH, 3, ncpus)
        assert after - before >= N
        assert bpf.read_bank_sum(view, WIDTH, 0, ncpus) == 0  # other slots untouched

        assert p1.run_cnt - p0.run_cnt >= N
        assert p1.run_time_ns > p0.run_time_ns
        assert p1.name == "loader_test_enter" and p1.id > 0
        assert p1.insn_cnt > 0 and p1.xlated_insns >= p1.insn_cnt
        assert 0 < p1.verified_insns < 1000 and p1.jited_len > 0
        view.release()


@needs_bpf
def test_close_leaves_no_link_or_program(counter_obj: Path) -> None:
    if not shutil.which("bpftool"):
        pytest.skip("bpftool not installed")
    with bpf.BpfObject.open(counter_obj) as obj:
        obj.load()
        obj.attach_all()
        ids = {obj.prog_info(n).id for n in obj.program_names()}
        linked = {link.get("prog_id") for link in _bpftool_json("link", "show")}
        assert ids <= linked
    linked = {link.get("prog_id") for link in _bpftool_json("link", "show")}
    assert not ids & linked, "a link survived close()"
    assert not _wait_prog_gone(ids), "a program survived close()"


@needs_bpf
def test_exception_inside_with_detaches(counter_obj: Path) -> None:
    if not shutil.which("bpftool"):
        pytest.skip("bpftool not installed")
    ids: set[int] = set()
    with pytest.raises(RuntimeError, match="boom"):
        with bpf.BpfObject.open(counter_obj) as obj:
            obj.load()
            obj.attach_all()
            ids = {obj.prog_info(n).id for n in obj.program_names()}
            raise RuntimeError("boom")
    assert ids
    assert not ids & {link.get("prog_id") for link in _bpftool_json("link", "show")}
    assert not _wait_prog_gone(ids)


@needs_bpf
def test_sigterm_unwinds_and_detaches(counter_obj: Path) -> None:
    if not shutil.which("bpftool"):
        pytest.skip("bpftool not installed")
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from rezolus_sampler.kernel import bpf
        try:
            with bpf.cleanup_on_signals(), bpf.BpfObject.open({str(counter_obj)!r}) as obj:
                obj.load()
                obj.attach_all()
                print(" ".join(str(obj.prog_info(n).id) for n in obj.program_names()), flush=True)
                time.sleep(60)
        finally:
            print("closed", flush=True)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        ids = {int(x) for x in child.stdout.readline().split()}
        assert ids, "child did not load"
        child.send_signal(signal.SIGTERM)
        rest, _ = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 128 + signal.SIGTERM
    assert "closed" in rest
    assert not _wait_prog_gone(ids)


@needs_bpf
def test_bpf_stats_state_restored(counter_obj: Path) -> None:
    sysctl = Path("/proc/sys/kernel/bpf_stats_enabled")
    before = sysctl.read_text()
    with bpf.BpfObject.open(counter_obj) as obj:
        obj.set_autoload("loader_test_unused", False)
        obj.load()
        obj.attach_all()
        with bpf.bpf_stats_enabled() as mode:
            assert mode in ("fd", "sysctl")
            p0 = obj.prog_info("loader_test_enter")
            _syscalls(N)
            p1 = obj.prog_info("loader_test_enter")
            assert p1.run_cnt - p0.run_cnt >= N
        assert sysctl.read_text() == before
        if before.strip() == "0":
            # stats are off again (unless another process holds them on)
            _syscalls(N)
            p2 = obj.prog_info("loader_test_enter")
            assert p2.run_cnt - p1.run_cnt < N, "BPF stats still enabled after the context exited"


@needs_bpf
@needs_rezolus
def test_verifier_log_in_load_error(tmp_path: Path) -> None:
    obj_path = _compile(tmp_path, "bad", BAD_SRC)
    with bpf.BpfObject.open(obj_path) as obj:
        with pytest.raises(bpf.BpfError) as exc:
            obj.load()
    msg = str(exc.value)
    assert "loader_test_bad" in msg
    # the kernel's verifier complaint about the unchecked map value pointer
    assert "invalid mem access" in msg or "map_value_or_null" in msg, msg


@needs_bpf
def test_ensure_fs_mounts() -> None:
    bpf.ensure_fs()
    mounts = {line.split()[1]: line.split()[2] for line in Path("/proc/self/mounts").read_text().splitlines()}
    assert mounts.get("/sys/kernel/tracing") == "tracefs"
    assert mounts.get("/sys/fs/bpf") == "bpf"
    assert bpf.ensure_fs() == []  # idempotent


@needs_bpf
def test_attach_before_load_is_an_error(counter_obj: Path) -> None:
    with bpf.BpfObject.open(counter_obj) as obj:
        with pytest.raises(bpf.BpfError):
            obj.attach_all()
    with pytest.raises(bpf.BpfError):
        obj.program_names()  # closed
