"""Histogram bucket indices, proven equal at every bucket boundary.

The reference is rezolus_sampler/kernel/histogram.py, a port of the Rust
`histogram` crate (v1.3.1) checked here against the crate's own unit-test
values.  Rezolus' histogram.h `value_to_index(v, 3)` and every candidate of
bench/histogram_index.py (among them the C that rezolus_sampler/emit/histogram_c.py
gives the templates) must return the crate's index for every bucket's lower and
upper bound, the values just outside them, 0, 1, u64::MAX and random values:
compiled natively with the host clang and called through ctypes, and compiled
with Rezolus' BPF flags into SEC("syscall") programs that the running kernel
executes with BPF_PROG_TEST_RUN.
"""

from __future__ import annotations

import ctypes
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from support import ARCHES, REPO, clang_command, require_rezolus

from rezolus_sampler.emit import histogram_c
from rezolus_sampler.kernel import bpf
from rezolus_sampler.kernel.histogram import (
    REZOLUS,
    U64_MAX,
    Config,
    HistogramConfigError,
    boundary_values,
    quantiles,
)

sys.path.insert(0, str(REPO / "bench"))
import histogram_index as bench  # noqa: E402

_BPF_OK, _BPF_WHY = bpf.bpf_available(require_btf=False)
RNG = random.Random(20260821)
# random values with bit lengths spread evenly over 1..64
RANDOM = [RNG.getrandbits(RNG.randint(1, 64)) for _ in range(4000)]
VALUES = sorted(set(boundary_values(REZOLUS)) | set(RANDOM))


def _call(c: bench.Candidate, arg: str) -> str:
    return f"{c.entry}({arg})" if c.entry else f"value_to_index({arg}, 3)"


# --------------------------------------------------------------------------
# the port, against the crate's own tests (src/config.rs, src/standard.rs)
# --------------------------------------------------------------------------


def test_port_reproduces_the_crates_config_tests() -> None:
    assert [Config(g, m).total_buckets for g, m in ((2, 64), (7, 64), (14, 64), (2, 4))] == [
        252,
        7424,
        835_584,
        12,
    ]
    c = Config(7, 64)
    expected = {0: 0, 1: 1, 256: 256, 257: 256, 258: 257, 512: 384, 515: 384, 516: 385,
                1024: 512, 1031: 512, 1032: 513, U64_MAX - 1: 7423, U64_MAX: 7423}
    assert {v: c.value_to_index(v) for v in expected} == expected
    lower = {0: 0, 1: 1, 256: 256, 384: 512, 512: 1024, 7423: 18_374_686_479_671_623_680}
    assert {i: c.index_to_lower_bound(i) for i in lower} == lower
    upper = {0: 0, 1: 1, 256: 257, 384: 515, 512: 1031, 7423: U64_MAX}
    assert {i: c.index_to_upper_bound(i) for i in upper} == upper
    for bad in ((3, 65), (5, 5), (6, 5)):
        with pytest.raises(HistogramConfigError):
            Config(*bad)
    with pytest.raises(ValueError, match="OutOfRange"):
        Config(3, 10).value_to_index(1 << 10)


def test_port_reproduces_the_crates_quantile_tests() -> None:
    c = Config(7, 64)
    buckets = [0] * c.total_buckets
    assert quantiles(c, buckets, [0.5]) is None
    for v in range(101):
        buckets[c.value_to_index(v)] += 1
    q = quantiles(c, buckets, [0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999])
    assert {k: b.upper for k, b in q.entries.items()} == {
        0.0: 0, 0.25: 25, 0.5: 50, 0.75: 75, 0.9: 90, 0.99: 99, 0.999: 100
    }
    assert (q.total, q.min.lower, q.max.upper) == (101, 0, 100)
    buckets[c.value_to_index(1024)] += 1
    top = quantiles(c, buckets, [0.999]).entries[0.999]
    assert (top.count, top.lower, top.upper) == (1, 1024, 1031)
    for bad in (-1.0, 1.01):
        with pytest.raises(ValueError, match="InvalidQuantile"):
            quantiles(c, buckets, [bad])
    one = [0] * c.total_buckets
    one[c.value_to_index(42)] = 1
    result = quantiles(c, one, [0.5, 0.5, 0.99, 0.99])
    assert len(result.entries) == 2 and result.min.upper == result.max.upper == 42


def test_rezolus_buckets_tile_u64_with_bounded_error() -> None:
    c = REZOLUS
    assert (c.total_buckets, c.index_to_lower_bound(0), c.index_to_upper_bound(495)) == (
        496,
        0,
        U64_MAX,
    )
    for i in range(c.total_buckets):
        lo, hi = c.index_to_lower_bound(i), c.index_to_upper_bound(i)
        assert c.value_to_index(lo) == c.value_to_index(hi) == i
        if i + 1 < c.total_buckets:
            assert c.index_to_lower_bound(i + 1) == hi + 1
        assert hi - lo <= lo * c.relative_error  # width <= lower bound / 8


# --------------------------------------------------------------------------
# native: host clang, called through ctypes
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def native(tmp_path_factory) -> ctypes.CDLL:
    root = require_rezolus()
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed")
    work = tmp_path_factory.mktemp("native")
    wrappers = "".join(
        f"u32 idx_{c.key}(u64 v) {{\n    return {_call(c, 'v')};\n}}\n" for c in bench.CANDIDATES
    )
    (work / "index.c").write_text(
        "#include <stdint.h>\n"
        "typedef uint64_t u64;\ntypedef uint32_t u32;\ntypedef uint8_t u8;\n"
        "#ifndef __always_inline\n#define __always_inline inline __attribute__((always_inline))\n"
        "#endif\n#define __noinline __attribute__((noinline))\n#define HISTOGRAM_POWER 3\n"
        f'#include "{root / "src" / "agent" / "bpf" / "histogram.h"}"\n'
        + bench.definitions(bench.CANDIDATES)
        + wrappers
    )
    lib = work / "index.so"
    subprocess.run(
        ["clang", "-O2", "-shared", "-fPIC", "-Wall", "-Wno-unused-function", "-Werror",
         str(work / "index.c"), "-o", str(lib)],
        check=True,
    )
    dll = ctypes.CDLL(str(lib))
    for c in bench.CANDIDATES:
        fn = getattr(dll, f"idx_{c.key}")
        fn.argtypes, fn.restype = [ctypes.c_uint64], ctypes.c_uint32
    return dll


@pytest.mark.parametrize("key", [c.key for c in bench.CANDIDATES])
def test_native_index_equals_the_crate(native, key: str) -> None:
    fn = getattr(native, f"idx_{key}")
    wrong = [
        (v, fn(v), REZOLUS.value_to_index(v)) for v in VALUES if fn(v) != REZOLUS.value_to_index(v)
    ]
    assert not wrong, f"{key}: (value, got, crate) {wrong[:5]} ({len(wrong)} of {len(VALUES)})"


# --------------------------------------------------------------------------
# in the kernel: SEC("syscall") programs run with BPF_PROG_TEST_RUN
# --------------------------------------------------------------------------


def _syscall_source(root: Path) -> str:
    progs = "".join(
        f'SEC("syscall")\nint idx_{c.key}(u64* ctx) {{\n    return {_call(c, "ctx[0]")};\n}}\n\n'
        for c in bench.CANDIDATES
    )
    return (
        "#include <vmlinux.h>\n"
        f'#include "{root / "src" / "agent" / "bpf" / "helpers.h"}"\n'
        "#include <bpf/bpf_helpers.h>\n\n#define HISTOGRAM_POWER 3\n\n"
        + bench.definitions(bench.CANDIDATES)
        + "\n"
        + progs
        + 'char LICENSE[] SEC("license") = "GPL";\n'
    )


@pytest.mark.skipif(not _BPF_OK, reason=f"cannot run BPF here: {_BPF_WHY}")
def test_kernel_index_equals_the_crate(tmp_path: Path) -> None:
    root = require_rezolus()
    src, obj = tmp_path / "index.bpf.c", tmp_path / "index.bpf.o"
    src.write_text(_syscall_source(root))
    bpf.compile_bpf(src, obj, root)
    with bpf.BpfObject.open(obj) as o:
        try:
            o.load()
        except bpf.BpfError as e:
            if "Invalid argument" in str(e).splitlines()[0] and "syscall" in str(e):
                pytest.skip(f"kernel refuses SEC(\"syscall\") programs: {str(e).splitlines()[0]}")
            raise
        for c in bench.CANDIDATES:
            name = f"idx_{c.key}"
            wrong = []
            for v in VALUES:
                got = o.test_run(name, struct.pack("<Q", v))
                if got != REZOLUS.value_to_index(v):
                    wrong.append((v, got, REZOLUS.value_to_index(v)))
            assert not wrong, f"{c.key} in the kernel: (value, got, crate) {wrong[:5]}"


# --------------------------------------------------------------------------
# the emitted text
# --------------------------------------------------------------------------


def test_emitted_function_is_the_measured_candidate() -> None:
    emitted = next(c for c in bench.CANDIDATES if c.key == "emitted")
    text = histogram_c.index_function()
    assert emitted.defs == (text,) and emitted.entry == histogram_c.INDEX_FUNCTION
    assert "#include" not in text and "histogram.h" not in text.split("//")[0]
    assert "if (" not in text  # branch-free, as measured
    assert (histogram_c.GROUPING_POWER, histogram_c.MAX_VALUE_POWER, histogram_c.BUCKETS) == (
        3,
        64,
        496,
    )


def _compile_sampler(tmp_path: Path, arch: str, with_helpers: bool, used: bool):
    """A sampler-shaped mod.bpf.c holding the emitted function, compiled with
    Rezolus' flags from a scratch tree (so helpers.h resolves as in Rezolus)."""
    root = require_rezolus()
    include = '#include "../../../agent/bpf/helpers.h"\n' if with_helpers else ""
    sampler = tmp_path / "src" / "agent" / "samplers" / "g" / "linux" / "s"
    sampler.mkdir(parents=True)
    shutil.copytree(root / "src" / "agent" / "bpf", tmp_path / "src" / "agent" / "bpf")
    value = "histogram_index(bpf_ktime_get_ns())" if used else "0"
    (sampler / "mod.bpf.c").write_text(
        "#include <vmlinux.h>\n" + include + "#include <bpf/bpf_helpers.h>\n\n"
        + histogram_c.index_function()
        + "\nstruct {\n    __uint(type, BPF_MAP_TYPE_ARRAY);\n"
        "    __uint(map_flags, BPF_F_MMAPABLE);\n"
        "    __type(key, u32);\n    __type(value, u64);\n"
        f"    __uint(max_entries, {histogram_c.BUCKETS});\n}} latency SEC(\".maps\");\n\n"
        'SEC("raw_tp/sys_enter")\nint sys_enter(void* ctx) {\n'
        f"    u32 idx = {value};\n"
        "    u64* bucket = bpf_map_lookup_elem(&latency, &idx);\n\n"
        "    if (bucket) {\n        __atomic_fetch_add(bucket, 1, __ATOMIC_RELAXED);\n    }\n"
        "    return 0;\n}\n\nchar LICENSE[] SEC(\"license\") = \"GPL\";\n"
    )
    return subprocess.run(
        clang_command(tmp_path, sampler / "mod.bpf.c", tmp_path / "mod.o", arch),
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("with_helpers", [True, False])
def test_emitted_function_compiles_with_rezolus_flags(
    tmp_path: Path, arch: str, with_helpers: bool
) -> None:
    """-Wall -Werror on both arches, beside helpers.h (histogram.h's clz and
    value_to_index in scope) or without it."""
    proc = _compile_sampler(tmp_path, arch, with_helpers, used=True)
    assert proc.returncode == 0, proc.stderr


def test_emitted_function_unused_is_an_error(tmp_path: Path) -> None:
    """What the docstring tells the templates: print it only where it is called."""
    proc = _compile_sampler(tmp_path, "x86_64", with_helpers=True, used=False)
    assert proc.returncode != 0 and "unused function 'histogram_index'" in proc.stderr


def test_emitted_function_is_clang_format_clean(tmp_path: Path) -> None:
    root = require_rezolus()
    if shutil.which("clang-format") is None:
        pytest.skip("clang-format is not installed")
    shutil.copy(root / ".clang-format", tmp_path / ".clang-format")
    source = tmp_path / "index.c"
    source.write_text(histogram_c.index_function())
    formatted = subprocess.run(
        ["clang-format", "--style=file", str(source)], capture_output=True, text=True, check=True
    ).stdout
    assert formatted == histogram_c.index_function()
