"""Prove a rendered sampler against the running kernel (principle P14).

    rezolus-sampler prove SAMPLER_DIR [--workload W | --command CMD]
                          [--count N] [--size S] [--force-raw] [--json] [--write-doc]

Compiles ``mod.bpf.c`` with Rezolus' flags, loads it the way the generated
``mod.rs`` does (same twin selection, read from the rendered ``mod.rs`` text),
attaches every program, runs a workload and reads every counters map through
mmap with the stride Rezolus' reader uses, and every histogram map with the
bucket count its ``RwLockHistogram`` static implies.  Prints each series' delta,
each histogram's count, p50/p90/p99 and max bucket (as the Rust histogram crate
computes them, ``kernel/histogram.py``) and, per program, verifier/xlated
instruction counts, run count and ns per event from kernel BPF stats.
``--write-doc`` stores those figures in the sampler's ``README.md`` between the
measured-cost markers.

Exit status: 0 proven, 1 the sampler is wrong (compile, verifier, layout,
twins, workload failure), 2 usage, 77 cannot prove here (not root, BPF
refused, workload impossible), 130 interrupted.  Nothing is pinned; every
link is owned by this process and destroyed on exit (``rezolus_sampler.kernel.bpf``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from rezolus_sampler.kernel import bpf
from rezolus_sampler.kernel.histogram import Config, HistogramConfigError, quantiles
from rezolus_sampler.tree.register import _atomic_write
from rezolus_sampler.tree.register import is_rezolus_tree

EXIT_FAIL, EXIT_USAGE, EXIT_CANNOT, EXIT_INTERRUPTED = 1, 2, 77, 130
MAX_CPUS_DEFAULT = 1024  # crate::agent::MAX_CPUS when src/agent/mod.rs cannot be read
BEGIN, END = "<!-- measured-cost:begin -->", "<!-- measured-cost:end -->"
BTF_PATH = Path("/sys/kernel/btf/vmlinux")
ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
SYS_GETPPID = {"x86_64": 110, "aarch64": 173}
NOT_LABELS = {"unit", "acq_group", "sampler"}
PERCENTILES = (0.5, 0.9, 0.99)  # reported per histogram, as the crate computes them


class ProveError(Exception):
    """The sampler is wrong or inconsistent (exit 1)."""


class UsageError(Exception):
    """The command line does not say enough (exit 2)."""


class CannotProve(Exception):
    """This machine cannot prove anything (exit 77)."""


# --------------------------------------------------------------------------
# reading the rendered sources
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Series:
    static: str
    metric: str
    labels: dict[str, str]
    acq_group: str | None = None

    @property
    def key(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.labels.items())
        return f"{self.metric}{{{inner}}}" if inner else self.metric


@dataclasses.dataclass(frozen=True)
class CounterMap:
    map: str
    vector: str
    per_cpu: bool  # registered with .cpu_counters (CounterGroup statics)
    statics: list[str]

    @property
    def width(self) -> int:
        """Rezolus' bank width: whole cachelines of u64, in u64 slots."""
        return -(-len(self.statics) * 8 // 64) * 8


@dataclasses.dataclass(frozen=True)
class HistogramMap:
    """One ``.histogram("<map>", &<STATIC>, &<GROUP>)`` registration and the
    ``RwLockHistogram::new(grouping_power, max_value_power)`` of its static."""

    map: str
    static: str
    group: str  # the AcquisitionGroup static
    config: Config


@dataclasses.dataclass(frozen=True)
class Sampler:
    dir: Path
    root: Path
    name: str
    maps: list[CounterMap]
    series: dict[str, Series]
    twins: tuple[list[str], list[str]] | None  # (disabled with BTF, disabled without)
    categories: list[str]
    histograms: list[HistogramMap] = dataclasses.field(default_factory=list)
    userspace_maps: list[str] = dataclasses.field(default_factory=list)  # .map("<name>", ...)
    group_problems: list[str] = dataclasses.field(default_factory=list)


def _strip_line_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", text)


_VEC = re.compile(r"let\s+(\w+)\s*=\s*vec!\s*\[(.*?)\]\s*;", re.S)
_REG = re.compile(r"\.(counters|cpu_counters)\(\s*\"(\w+)\"\s*,\s*(\w+)\s*,")
_TWINS = re.compile(
    r"\.disabled_programs\(\s*if\s+kernel_has_btf\(\)\s*"
    r"\{\s*&\[(.*?)\]\s*\}\s*else\s*\{\s*&\[(.*?)\]\s*\}\s*\)",
    re.S,
)
_METRIC = re.compile(r'#\[metric\(((?:[^"()]|"(?:[^"\\]|\\.)*")*)\)\]\s*pub\s+static\s+(\w+)\s*:')
_KV = re.compile(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"')
_HIST_REG = re.compile(r'\.histogram\(\s*"(\w+)"\s*,\s*&\s*(\w+)\s*,\s*&\s*(\w+)\s*,?\s*\)')
_COUNTER_GROUP = re.compile(r'\.(?:counters|cpu_counters)\(\s*"\w+"\s*,\s*\w+\s*,\s*&\s*(\w+)')
_USER_MAP = re.compile(r'\.map\(\s*"(\w+)"')
_HIST_STATIC = re.compile(
    r"pub\s+static\s+(\w+)\s*:\s*RwLockHistogram\s*=\s*"
    r"RwLockHistogram::new\(\s*([\w:]+)\s*,\s*([\w:]+)\s*,?\s*\)"
)
_ACQ_GROUP = re.compile(
    r"static\s+(\w+)\s*:\s*AcquisitionGroup\s*=\s*AcquisitionGroup::new\((.*?)\)\s*;", re.S
)
_DOC_HOOK = re.compile(r"^//! \* `(\w+):\w+", re.M)
_SEC_CATEGORY = re.compile(r'SEC\("tracepoint/(\w+)/\w+"\)')


def parse_counter_maps(mod_rs: str) -> list[CounterMap]:
    """Every ``.counters``/``.cpu_counters`` registration with its vector's statics."""
    code = _strip_line_comments(mod_rs)
    vectors = {name: re.findall(r"&\s*(\w+)", body) for name, body in _VEC.findall(code)}
    maps = []
    for kind, map_name, vector in _REG.findall(code):
        if vector not in vectors:
            raise ProveError(
                f"mod.rs registers map {map_name!r} with {vector!r}, "
                f"but has no `let {vector} = vec![...];`"
            )
        maps.append(CounterMap(map_name, vector, kind == "cpu_counters", vectors[vector]))
    return maps


def parse_histogram_maps(mod_rs: str) -> list[tuple[str, str, str]]:
    """(map, histogram static, acquisition group static) of every ``.histogram`` call."""
    return _HIST_REG.findall(_strip_line_comments(mod_rs))


def _u8_constant(name: str, sources: list[str]) -> int | None:
    """The value of ``static|const NAME: u8 = N;`` in the first source declaring it."""
    pattern = re.compile(rf"(?:static|const)\s+{re.escape(name)}\s*:\s*u8\s*=\s*(\d+)(?:u8)?\s*;")
    for text in sources:
        match = pattern.search(_strip_line_comments(text))
        if match:
            return int(match.group(1))
    return None


def parse_histogram_statics(stats_rs: str, common_rs: str = "") -> dict[str, Config]:
    """Static -> histogram config from ``RwLockHistogram::new(a, b)``; a and b are
    integer literals or u8 statics/consts of stats.rs or crate::common (Rezolus'
    ``HISTOGRAM_GROUPING_POWER``, ``static LATENCY_HISTOGRAM_MAX: u8 = 64``)."""
    sources = [stats_rs, common_rs]
    found = {}
    for static, *args in _HIST_STATIC.findall(_strip_line_comments(stats_rs)):
        values = []
        for arg in args:
            literal = re.fullmatch(r"(\d+)(?:u8)?", arg)
            value = int(literal.group(1)) if literal else _u8_constant(arg.split("::")[-1], sources)
            if value is None:
                raise ProveError(
                    f"stats.rs: cannot resolve {arg} in RwLockHistogram::new({', '.join(args)}) "
                    f"of {static} (not a literal or a u8 static/const of stats.rs or "
                    f"src/common/mod.rs)"
                )
            values.append(value)
        try:
            found[static] = Config(*values)
        except HistogramConfigError as e:
            raise ProveError(f"stats.rs: {static}: RwLockHistogram::new{tuple(values)}: {e}") from e
    return found


def parse_acquisition_groups(stats_rs: str) -> dict[str, str]:
    """AcquisitionGroup static -> its name (the last string literal of ``new(..)``)."""
    groups = {}
    for static, body in _ACQ_GROUP.findall(_strip_line_comments(stats_rs)):
        literals = re.findall(r'"((?:[^"\\]|\\.)*)"', body)
        if literals:
            groups[static] = literals[-1]
    return groups


def histogram_group_problems(
    histograms: list[HistogramMap], series: dict[str, Series], mod_rs: str, stats_rs: str
) -> list[str]:
    """Rezolus' acquisition-group rules for histograms (builder.rs ``histogram``): each
    static's ``acq_group`` metadata names the group it is registered with; a group
    is shared only by label instances of one family and never by a counters map."""
    names = parse_acquisition_groups(stats_rs)
    counter_groups = set(_COUNTER_GROUP.findall(_strip_line_comments(mod_rs)))
    problems, families = [], {}
    for h in histograms:
        tagged = series[h.static].acq_group
        declared = names.get(h.group)
        if declared is not None and tagged != declared:
            problems.append(
                f"{h.static} is registered with {h.group} (\"{declared}\") but its metadata "
                f"says acq_group = {tagged!r}"
            )
        if h.group in counter_groups:
            problems.append(f"{h.group} brackets histogram map {h.map} and a counters map")
        families.setdefault(h.group, set()).add(series[h.static].metric)
    for group, metrics in families.items():
        if len(metrics) > 1:
            problems.append(f"{group} is shared by histogram families {', '.join(sorted(metrics))}")
    return problems


def parse_twins(mod_rs: str) -> tuple[list[str], list[str]] | None:
    """The two name lists of ``.disabled_programs(if kernel_has_btf() {..} else {..})``."""
    code = _strip_line_comments(mod_rs)
    match = _TWINS.search(code)
    if match is None:
        if ".disabled_programs(" in code:
            raise ProveError(
                "mod.rs calls .disabled_programs(...) in a form other than "
                "`if kernel_has_btf() { &[..] } else { &[..] }`"
            )
        return None
    with_btf, without = (re.findall(r'"(\w+)"', group) for group in match.groups())
    return with_btf, without


def parse_metrics(stats_rs: str) -> dict[str, Series]:
    """Static name -> metric name and labels (metadata minus unit/acq_group/sampler)."""
    found = {}
    for body, static in _METRIC.findall(stats_rs):
        fields = dict(_KV.findall(re.sub(r"metadata\s*=\s*\{.*?\}", "", body, flags=re.S)))
        meta = re.search(r"metadata\s*=\s*\{(.*?)\}", body, re.S)
        metadata = dict(_KV.findall(meta.group(1) if meta else ""))
        labels = {k: v for k, v in metadata.items() if k not in NOT_LABELS}
        found[static] = Series(static, fields.get("name", "?"), labels, metadata.get("acq_group"))
    return found


def find_root(start: Path) -> Path:
    for candidate in [start, *start.parents]:
        if is_rezolus_tree(candidate):
            return candidate
    raise ProveError(f"{start} is not inside a Rezolus tree (no build.rs with SOURCES above it)")


def read_sampler(directory: Path) -> Sampler:
    directory = directory.resolve()
    for name in ("mod.bpf.c", "mod.rs", "stats.rs"):
        if not (directory / name).is_file():
            raise ProveError(f"{directory} is not a rendered sampler: {name} is missing")
    root = find_root(directory)
    mod_rs = (directory / "mod.rs").read_text()
    stats_rs = (directory / "stats.rs").read_text()
    try:
        common_rs = (root / "src" / "common" / "mod.rs").read_text()
    except OSError:
        common_rs = ""
    configs = parse_histogram_statics(stats_rs, common_rs)
    histograms = []
    for map_name, static, group in parse_histogram_maps(mod_rs):
        if static not in configs:
            raise ProveError(
                f"mod.rs registers histogram map {map_name!r} with {static}, but stats.rs "
                f"declares no `pub static {static}: RwLockHistogram = RwLockHistogram::new(..)`"
            )
        histograms.append(HistogramMap(map_name, static, group, configs[static]))
    name_match = re.search(r'const\s+NAME\s*:\s*&str\s*=\s*"(\w+)"', mod_rs)
    categories = _DOC_HOOK.findall(mod_rs) + _SEC_CATEGORY.findall(
        (directory / "mod.bpf.c").read_text()
    )
    series = parse_metrics(stats_rs)
    missing = [h.static for h in histograms if h.static not in series]
    if missing:
        raise ProveError(f"histogram statics without a #[metric(...)]: {', '.join(missing)}")
    sampler = Sampler(
        dir=directory,
        root=root,
        name=name_match.group(1) if name_match else directory.name,
        maps=parse_counter_maps(mod_rs),
        series=series,
        twins=parse_twins(mod_rs),
        categories=list(dict.fromkeys(categories)),
        histograms=histograms,
        userspace_maps=_USER_MAP.findall(_strip_line_comments(mod_rs)),
        group_problems=histogram_group_problems(histograms, series, mod_rs, stats_rs),
    )
    if not sampler.maps and not sampler.histograms:
        raise ProveError(
            "mod.rs registers no .counters/.cpu_counters/.histogram map: nothing to prove"
        )
    for m in sampler.maps:
        missing = [s for s in m.statics if s not in sampler.series]
        if missing:
            raise ProveError(
                f"vector {m.vector} names statics stats.rs does not declare: {', '.join(missing)}"
            )
    return sampler


def max_cpus(root: Path) -> int:
    try:
        text = (root / "src" / "agent" / "mod.rs").read_text()
    except OSError:
        return MAX_CPUS_DEFAULT
    match = re.search(r"pub\s+const\s+MAX_CPUS\s*:\s*usize\s*=\s*(\d+)", text)
    return int(match.group(1)) if match else MAX_CPUS_DEFAULT


# --------------------------------------------------------------------------
# workloads
# --------------------------------------------------------------------------


Run = Callable[[], str]  # performs the measured work, returns what it did


@contextmanager
def _syscalls(n: int, _size: int) -> Iterator[Run]:
    def run() -> str:
        for _ in range(n):
            os.getppid()  # glibc does not cache getppid: one syscall each
        return f"{n} getppid() syscalls (nr {SYS_GETPPID.get(host_arch(), '?')})"

    yield run


@contextmanager
def udp_loopback(size: int) -> Iterator[Callable[[int], None]]:
    """A connected UDP socket pair on 127.0.0.1; the callable sends and receives n datagrams."""
    payload = b"\xa5" * size
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        tx.connect(rx.getsockname())

        def exchange(n: int) -> None:
            for _ in range(n):  # one in flight at a time: nothing dropped
                tx.send(payload)
                if len(rx.recv(size + 1)) != size:
                    raise ProveError("udp workload: short datagram")

        yield exchange


@contextmanager
def _udp(n: int, size: int) -> Iterator[Run]:
    with udp_loopback(size) as exchange:

        def run() -> str:
            exchange(n)
            return f"{n} UDP datagrams of {size} B sent and received on 127.0.0.1"

        yield run


def _backing_dir() -> str:
    """Where the loop device's file lives: tmpfs when there is one, so the loop
    device's requests are the workload's only block requests (a file on a disk
    filesystem would add that disk's requests for the same writes)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 2 and fields[1] == str(shm) and fields[2] == "tmpfs":
                return str(shm)
    return "/var/tmp"


@contextmanager
def _loop_device(size: int) -> Iterator[str]:
    """A loop device over a fresh sparse file, detached (and the file removed) on exit."""
    if shutil.which("losetup") is None:
        raise CannotProve("block workload needs losetup (util-linux)")
    with tempfile.TemporaryDirectory(prefix="prove-block-", dir=_backing_dir()) as tmp:
        backing = Path(tmp) / "disk.img"
        with open(backing, "wb") as f:
            f.truncate(size)
        proc = None
        for extra in (["--direct-io=on"], []):
            proc = subprocess.run(
                ["losetup", "--find", "--show", *extra, str(backing)],
                capture_output=True,
                text=True,
            )
            if proc.returncode == 0:
                break
        assert proc is not None
        if proc.returncode != 0:
            raise CannotProve(f"block workload: losetup failed: {proc.stderr.strip()}")
        device = proc.stdout.strip()
        try:
            if shutil.which("udevadm"):  # let udev's probe reads finish before measuring
                subprocess.run(["udevadm", "settle", "--timeout=5"], capture_output=True)
            yield device
        finally:
            subprocess.run(["losetup", "--detach", device], capture_output=True)


@contextmanager
def _block(n: int, size: int | list[int]) -> Iterator[Run]:
    """n writes of each size (one size after the other), never overlapping."""
    import mmap

    sizes = size if isinstance(size, list) else [size]
    if any(s % 512 for s in sizes):
        raise ProveError("block workload: --size must be a multiple of 512")
    buf = mmap.mmap(-1, max(sizes))  # page-aligned, as O_DIRECT requires
    buf.write(b"\x5a" * max(sizes))
    with _loop_device(max(n * sum(sizes), 1 << 20)) as device:
        fd = os.open(device, os.O_WRONLY | os.O_DIRECT | os.O_SYNC)
        try:

            def run() -> str:
                offset = 0
                for s in sizes:
                    chunk = memoryview(buf)[:s]
                    try:
                        for _ in range(n):
                            if os.pwrite(fd, chunk, offset) != s:
                                raise ProveError("block workload: short write")
                            offset += s
                    finally:
                        chunk.release()
                each = " and ".join(f"{s} B" for s in sizes)
                return (
                    f"{n} direct (O_DIRECT|O_SYNC) writes {'each ' if len(sizes) > 1 else ''}"
                    f"of {each} to {device}, a loop device over a file in "
                    f"{_backing_dir()} (set up and torn down outside the measurement)"
                )

            yield run
        finally:
            os.close(fd)


@contextmanager
def _fork(n: int, _size: int) -> Iterator[Run]:
    def run() -> str:
        for _ in range(n):
            pid = os.fork()
            if pid == 0:
                try:
                    os.execv("/bin/true", ["/bin/true"])
                finally:
                    os._exit(127)
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise ProveError("fork workload: /bin/true failed")
        return f"{n} fork+exec of /bin/true"

    yield run


@contextmanager
def _command(command: str) -> Iterator[Run]:
    def run() -> str:
        # its output goes to stderr: stdout carries the report (--json)
        status = subprocess.run(command, shell=True, stdout=sys.stderr.fileno()).returncode
        if status:
            raise ProveError(f"workload command exited with status {status}: {command}")
        return f"shell command: {command}"

    yield run


WORKLOADS: dict[str, tuple[Callable[[int, int], Any], int, int]] = {
    # name: (context manager yielding the measured run, default count, default size)
    "syscalls": (_syscalls, 200_000, 0),
    "udp": (_udp, 20_000, 512),
    "block": (_block, 256, 4096),
    "fork": (_fork, 300, 0),
}
CATEGORY_WORKLOAD = {
    "raw_syscalls": "syscalls",
    "syscalls": "syscalls",
    "net": "udp",
    "block": "block",
    "sched": "fork",
}


def default_workload(categories: list[str]) -> str | None:
    return next((CATEGORY_WORKLOAD[c] for c in categories if c in CATEGORY_WORKLOAD), None)


@dataclasses.dataclass
class Workload:
    name: str
    count: int | None
    size: int | list[int] | None  # a list: the block workload writes count of each
    description: str = ""
    seconds: float = 0.0


def workload_for(
    name: str | None, command: str | None, count: int | None, size: int | list[int] | None
) -> tuple[Workload, Any]:
    """The workload's record and its context manager (setup/teardown outside the measurement)."""
    if command is not None:
        return Workload("command", None, None), _command(command)
    assert name is not None
    if isinstance(size, list) and name != "block":
        raise UsageError(f"the {name} workload takes one --size; only block writes several")
    factory, default_count, default_size = WORKLOADS[name]
    n = default_count if count is None else count
    s = default_size if size is None else size
    return Workload(name, n, s or None), factory(n, s)


# --------------------------------------------------------------------------
# proving
# --------------------------------------------------------------------------


def host_arch() -> str:
    return ARCHES.get(platform.machine(), platform.machine())


@dataclasses.dataclass
class MapReader:
    spec: CounterMap
    max_entries: int
    values: int  # u64 values in the map: MAX_CPUS * W
    view: memoryview
    ncpus: int

    def snapshot(self) -> list[list[int]]:
        """values[slot][cpu], read with Rezolus' stride: view[cpu * W + slot]."""
        w, v = self.spec.width, self.view
        return [
            [v[cpu * w + slot] for cpu in range(self.ncpus)]
            for slot in range(len(self.spec.statics))
        ]

    def close(self) -> None:
        mm = self.view.obj
        self.view.release()
        mm.close()


def _select_programs(
    obj: bpf.BpfObject, sampler: Sampler, force_raw: bool, notes: list[str]
) -> tuple[str | None, list[str]]:
    """Apply mod.rs' twin choice; returns (twin kind loaded, disabled names)."""
    if sampler.twins is None:
        if force_raw:
            notes.append("--force-raw: mod.rs has no disabled_programs twins; every program loads")
        return None, []
    btf = BTF_PATH.exists() and not force_raw
    disabled = sampler.twins[0] if btf else sampler.twins[1]
    names = set(obj.program_names())
    unknown = [n for n in disabled if n not in names]
    if unknown:
        raise ProveError(
            f"mod.rs disables programs that are not in the object: {', '.join(unknown)} "
            f"(object has: {', '.join(sorted(names))})"
        )
    for name in disabled:
        obj.set_autoload(name, False)
    return ("tp_btf" if btf else "raw_tp"), disabled


def _open_reader(
    obj: bpf.BpfObject, spec: CounterMap, ncpus: int, cpu_limit: int, errors: list[str]
) -> MapReader | None:
    """mmap one counters map after checking its shape against Rezolus' stride rule."""
    try:
        info = obj.map_info(spec.map)
    except bpf.BpfError as e:
        errors.append(str(e).splitlines()[0])
        return None
    # u64 values in the map: MAX_CPUS * W whether each entry is one u64 or a bank of W
    values = info.max_entries * info.value_size // 8
    if values % cpu_limit or values // cpu_limit != spec.width:
        errors.append(
            f"map {spec.map}: Rezolus reads it with "
            f"W = ceil({len(spec.statics)}*8/64)*8 = {spec.width} "
            f"(vector {spec.vector} has {len(spec.statics)} entries) but the map holds "
            f"{values / cpu_limit:g} u64 per CPU"
        )
    if not info.mmapable or info.value_size % 8 or info.type != bpf.BPF_MAP_TYPE_ARRAY:
        errors.append(
            f"map {spec.map}: not an mmapable u64 ARRAY (type {info.type}, "
            f"value {info.value_size} B, flags {info.map_flags:#x})"
        )
        return None
    if ncpus * spec.width > values:
        errors.append(
            f"map {spec.map}: {ncpus} CPUs x W {spec.width} exceeds its {values} u64; not read"
        )
        return None
    view = bpf.mmap_u64_array(obj.map_fd(spec.map), values)
    return MapReader(spec, info.max_entries, values, view, ncpus)


@dataclasses.dataclass
class HistogramReader:
    spec: HistogramMap
    max_entries: int
    values: int  # u64 values in the map
    view: memoryview  # the first config.total_buckets u64, as Rezolus' reader uses them

    def snapshot(self) -> list[int]:
        return list(self.view)

    def close(self) -> None:
        mm = self.view.obj
        self.view.release()
        mm.close()


def _open_histogram(
    obj: bpf.BpfObject, spec: HistogramMap, errors: list[str]
) -> HistogramReader | None:
    """mmap one histogram map after checking it holds the buckets its static implies.
    Rezolus' reader (src/agent/bpf/histogram.rs) maps whole pages and copies the
    first ``config().total_buckets()`` u64 without looking at the map's size."""
    try:
        info = obj.map_info(spec.map)
    except bpf.BpfError as e:
        errors.append(str(e).splitlines()[0])
        return None
    if not info.mmapable or info.value_size % 8 or info.type != bpf.BPF_MAP_TYPE_ARRAY:
        errors.append(
            f"histogram map {spec.map}: not an mmapable u64 ARRAY (type {info.type}, "
            f"value {info.value_size} B, flags {info.map_flags:#x})"
        )
        return None
    values = info.max_entries * info.value_size // 8
    buckets = spec.config.total_buckets
    if values != buckets:
        errors.append(
            f"histogram map {spec.map}: Rezolus reads it as {spec.static} = "
            f"RwLockHistogram::new({spec.config.grouping_power}, "
            f"{spec.config.max_value_power}), {buckets} buckets, but the map holds "
            f"{values} u64"
        )
        if values < buckets:
            return None
    view = bpf.mmap_u64_array(obj.map_fd(spec.map), buckets)
    return HistogramReader(spec, info.max_entries, values, view)


@dataclasses.dataclass
class Measurement:
    twins: str | None
    disabled: list[str]
    loaded: list[str]
    sections: dict[str, str]
    readers: list[MapReader]
    before: list[list[list[int]]]
    after: list[list[list[int]]]
    hist_readers: list[HistogramReader]
    hist_before: list[list[int]]
    hist_after: list[list[int]]
    progs_before: dict[str, bpf.ProgInfo]
    progs_after: dict[str, bpf.ProgInfo]
    stats: str


def measure(
    sampler: Sampler,
    workload_cm: Any,
    work: Workload,
    force_raw: bool,
    ncpus: int,
    cpu_limit: int,
    errors: list[str],
    notes: list[str],
    on_attached: Callable[[list[int]], None] | None,
    on_loaded: Callable[[bpf.BpfObject], None] | None = None,
) -> Measurement:
    """Compile, load (twins as mod.rs picks them), attach, snapshot, run, snapshot.
    Everything is detached and unloaded when this returns or raises."""
    with tempfile.TemporaryDirectory(prefix="prove-") as tmp, ExitStack() as stack:
        obj_path = Path(tmp) / f"{sampler.name}.bpf.o"
        try:
            bpf.compile_bpf(sampler.dir / "mod.bpf.c", obj_path, sampler.root, host_arch())
        except bpf.BpfError as e:
            raise ProveError(str(e)) from e
        stack.enter_context(bpf.cleanup_on_signals())
        try:
            bpf.ensure_fs()
        except bpf.BpfError as e:
            raise CannotProve(str(e)) from e
        obj = stack.enter_context(bpf.BpfObject.open(obj_path))
        twins, disabled = _select_programs(obj, sampler, force_raw, notes)
        try:
            obj.load()
        except bpf.BpfError as e:
            raise ProveError(f"the verifier refused the sampler:\n{e}") from e
        loaded = [n for n in obj.program_names() if n not in disabled]
        for name in sampler.userspace_maps:
            notes.append(
                f"mod.rs fills map {name} from userspace (.map); this proof leaves it as the "
                f"object declares it"
                + ("" if on_loaded is None else ", unless the caller's on_loaded hook fills it")
            )
        if on_loaded:
            on_loaded(obj)
        try:
            obj.attach_all()
        except bpf.BpfError as e:
            raise ProveError(str(e)) from e
        readers = []
        for spec in sampler.maps:
            reader = _open_reader(obj, spec, ncpus, cpu_limit, errors)
            if reader is not None:
                stack.callback(reader.close)
                readers.append(reader)
        hist_readers = []
        for spec in sampler.histograms:
            hist = _open_histogram(obj, spec, errors)
            if hist is not None:
                stack.callback(hist.close)
                hist_readers.append(hist)
        stats = stack.enter_context(bpf.bpf_stats_enabled())
        if on_attached:
            on_attached([obj.prog_info(n).id for n in loaded])
        with workload_cm as run:
            progs_before = {n: obj.prog_info(n) for n in loaded}
            before = [r.snapshot() for r in readers]
            hist_before = [h.snapshot() for h in hist_readers]
            start = time.monotonic()
            work.description = run()
            work.seconds = time.monotonic() - start
            after = [r.snapshot() for r in readers]
            hist_after = [h.snapshot() for h in hist_readers]
            progs_after = {n: obj.prog_info(n) for n in loaded}
        sections = {n: obj.section_name(n) for n in loaded}
    return Measurement(
        twins,
        disabled,
        loaded,
        sections,
        readers,
        before,
        after,
        hist_readers,
        hist_before,
        hist_after,
        progs_before,
        progs_after,
        stats,
    )


def _counter_rows(sampler: Sampler, m: Measurement) -> list[dict[str, Any]]:
    rows = []
    for reader, before, after in zip(m.readers, m.before, m.after):
        for slot, static in enumerate(reader.spec.statics):
            series = sampler.series[static]
            per_cpu = [y - x for x, y in zip(before[slot], after[slot])]
            rows.append(
                {
                    "map": reader.spec.map,
                    "slot": slot,
                    "static": static,
                    "metric": series.metric,
                    "labels": series.labels,
                    "key": series.key,
                    "per_cpu_layout": reader.spec.per_cpu,
                    "before": sum(before[slot]),
                    "after": sum(after[slot]),
                    "delta": sum(per_cpu),
                    "per_cpu": per_cpu,
                }
            )
    return rows


def _bucket(b: Any) -> dict[str, int] | None:
    return None if b is None else {"index": b.index, "lower": b.lower, "upper": b.upper}


def _histogram_rows(sampler: Sampler, m: Measurement) -> list[dict[str, Any]]:
    """Per histogram: the workload's delta, its percentiles and max bucket computed
    as the histogram crate computes them (``kernel/histogram.py``)."""
    rows = []
    for reader, before, after in zip(m.hist_readers, m.hist_before, m.hist_after):
        spec, series = reader.spec, sampler.series[reader.spec.static]
        delta = [y - x for x, y in zip(before, after)]
        result = quantiles(spec.config, delta, PERCENTILES)
        entries = result.entries if result else {}
        rows.append(
            {
                "map": spec.map,
                "static": spec.static,
                "metric": series.metric,
                "labels": series.labels,
                "key": series.key,
                "group": spec.group,
                "grouping_power": spec.config.grouping_power,
                "max_value_power": spec.config.max_value_power,
                "buckets": spec.config.total_buckets,
                "max_entries": reader.max_entries,
                "relative_error": spec.config.relative_error,
                "count": sum(delta),
                **{f"p{round(q * 100)}": _bucket(entries.get(q)) for q in PERCENTILES},
                "max": _bucket(result.max if result else None),
                "bucket_deltas": {str(i): d for i, d in enumerate(delta) if d},
            }
        )
    return rows


def _program_rows(m: Measurement) -> list[dict[str, Any]]:
    rows = []
    for name in m.loaded:
        x, y = m.progs_before[name], m.progs_after[name]
        runs, ns = y.run_cnt - x.run_cnt, y.run_time_ns - x.run_time_ns
        rows.append(
            {
                "name": name,
                "id": y.id,
                "section": m.sections[name],
                "verified_insns": y.verified_insns,
                "xlated_insns": y.xlated_insns,
                "insn_cnt": y.insn_cnt,
                "run_cnt": runs,
                "run_time_ns": ns,
                "ns_per_event": round(ns / runs, 1) if runs else None,
            }
        )
    return rows


def prove(
    directory: Path,
    workload: str | None = None,
    command: str | None = None,
    count: int | None = None,
    size: int | list[int] | None = None,
    force_raw: bool = False,
    on_attached: Callable[[list[int]], None] | None = None,
    on_loaded: Callable[[bpf.BpfObject], None] | None = None,
) -> dict[str, Any]:
    """Prove the sampler in ``directory``; returns the report (see ``--json``).
    Raises CannotProve (exit 77), ProveError (exit 1) or UsageError (exit 2)."""
    if os.geteuid() != 0:
        raise CannotProve(
            "not running as root (loading and attaching BPF needs CAP_BPF + CAP_PERFMON)"
        )
    try:
        sampler = read_sampler(directory)
    except OSError as e:
        raise ProveError(f"cannot read the sampler: {e}") from e
    if command is None and workload is None:
        workload = default_workload(sampler.categories)
        if workload is None:
            raise UsageError(
                f"no built-in workload for tracepoint categories "
                f"{sampler.categories or '(none found)'}: pass --command or --workload"
            )
    work, workload_cm = workload_for(workload, command, count, size)
    ok, why = bpf.bpf_available(require_btf=False)
    if not ok:
        raise CannotProve(why)
    errors: list[str] = []
    notes: list[str] = []
    cpu_limit = max_cpus(sampler.root)
    ncpus = min(bpf.possible_cpus(), cpu_limit)
    errors.extend(sampler.group_problems)
    m = measure(
        sampler, workload_cm, work, force_raw, ncpus, cpu_limit, errors, notes,
        on_attached, on_loaded,
    )
    return {
        "sampler": sampler.name,
        "dir": str(sampler.dir),
        "root": str(sampler.root),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "arch": host_arch(),
        "command_line": None,  # set by main()
        "btf": BTF_PATH.exists(),
        "twins": m.twins,
        "disabled": m.disabled,
        "loaded": m.loaded,
        "possible_cpus": ncpus,
        "max_cpus": cpu_limit,
        "stats": m.stats,
        "maps": [
            {
                "name": r.spec.map,
                "vector": r.spec.vector,
                "n": len(r.spec.statics),
                "width": r.spec.width,
                "max_entries": r.max_entries,
                "values": r.values,
                "layout": "per_cpu" if r.spec.per_cpu else "totals",
            }
            for r in m.readers
        ],
        "workload": dataclasses.asdict(work),
        "counters": _counter_rows(sampler, m),
        "histograms": _histogram_rows(sampler, m),
        "programs": _program_rows(m),
        "notes": notes,
        "errors": errors,
    }


# --------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------


def _table(rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _range(bucket: dict[str, int] | None) -> str:
    """A bucket as its inclusive value range."""
    if bucket is None:
        return "-"
    if bucket["lower"] == bucket["upper"]:
        return str(bucket["lower"])
    return f"{bucket['lower']}..={bucket['upper']}"


def _ns(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_text(report: dict[str, Any]) -> str:
    work = report["workload"]
    twins = {
        None: "none (every program loads)",
        "tp_btf": "tp_btf programs (raw_tp twins disabled)",
        "raw_tp": "raw_tp programs (tp_btf twins disabled)",
    }[report["twins"]]
    out = [
        f"sampler {report['sampler']}  ({report['dir']})",
        f"kernel {report['kernel']} {report['arch']}, BTF {'yes' if report['btf'] else 'no'}, "
        f"{report['possible_cpus']} possible CPUs, twins: {twins}",
        f"workload {work['name']}: {work['description']} in {work['seconds']:.2f} s",
    ]
    if report["maps"]:
        out.append(
            "maps: "
            + "; ".join(
                f"{m['name']} n={m['n']} W={m['width']} max_entries={m['max_entries']} "
                f"({m['layout']})"
                for m in report["maps"]
            )
        )
    hists = report.get("histograms", [])
    if hists:
        h = hists[0]
        out.append(
            f"histograms: {len(hists)} maps of RwLockHistogram::new({h['grouping_power']}, "
            f"{h['max_value_power']}) = {h['buckets']} buckets (relative error "
            f"{h['relative_error']:.1%}); percentiles of the workload's delta, as the "
            f"histogram crate computes them"
            if all(x["buckets"] == h["buckets"] for x in hists)
            else f"histograms: {len(hists)} maps"
        )
    out.append("")
    if report["counters"]:
        per_cpu = any(c["per_cpu_layout"] for c in report["counters"])
        rows = [["metric", "delta"] + (["per CPU"] if per_cpu else [])]
        for c in report["counters"]:
            row = [c["key"], str(c["delta"])]
            if per_cpu:
                row.append(
                    " ".join(f"cpu{i}={v}" for i, v in enumerate(c["per_cpu"]) if v)
                    if c["per_cpu_layout"]
                    else ""
                )
            rows.append(row)
        out += [_table(rows, {1}), ""]
    if hists:
        rows = [["histogram", "count", "p50", "p90", "p99", "max bucket"]]
        for h in hists:
            rows.append(
                [h["key"], str(h["count"])]
                + [_range(h[k]) for k in ("p50", "p90", "p99", "max")]
            )
        out += [_table(rows, {1}), ""]
    rows = [["program", "section", "verified", "xlated", "runs", "ns/event"]]
    for p in report["programs"]:
        rows.append(
            [
                p["name"],
                p["section"],
                str(p["verified_insns"]),
                str(p["xlated_insns"]),
                str(p["run_cnt"]),
                _ns(p["ns_per_event"]),
            ]
        )
    out.append(_table(rows, {2, 3, 4, 5}))
    if report["disabled"]:
        out.append("not loaded (twins): " + ", ".join(report["disabled"]))
    out += [f"note: {n}" for n in report["notes"]] + [f"ERROR: {e}" for e in report["errors"]]
    return "\n".join(out)


def measured_section(report: dict[str, Any]) -> str:
    work = report["workload"]
    attach = {None: "", "tp_btf": ", tp_btf twins loaded", "raw_tp": ", raw_tp twins loaded"}[
        report["twins"]
    ]
    lines = [
        f"Measured {report['date']} on Linux {report['kernel']} ({report['arch']}, "
        f"{report['possible_cpus']} possible CPUs{attach}) with:",
        "",
        f"    {report['command_line'] or 'rezolus-sampler prove ' + report['dir']}",
        "",
        f"Workload: {work['description']} ({work['seconds']:.2f} s).",
        "",
        "| program | section | verified insns | xlated insns | runs | ns/event |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for p in report["programs"]:
        lines.append(
            f"| `{p['name']}` | `{p['section']}` | {p['verified_insns']} | {p['xlated_insns']} | "
            f"{p['run_cnt']} | {_ns(p['ns_per_event'])} |"
        )
    lines += ["", "ns/event is kernel BPF stats run time / run count (per program, this run)."]
    return "\n".join(lines)


def _split_doc(readme: Path) -> tuple[str, str, str]:
    if not readme.is_file():
        raise ProveError(f"--write-doc: {readme} does not exist; nothing written")
    text = readme.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < 0 or end < start:
        raise ProveError(
            f"--write-doc: {readme} lacks the markers {BEGIN} ... {END}; nothing written"
        )
    return text[: start + len(BEGIN)], text[start + len(BEGIN) : end], text[end:]


def write_doc(readme: Path, section: str) -> None:
    head, _, tail = _split_doc(readme)
    mode = readme.stat().st_mode & 0o7777
    _atomic_write(readme, f"{head}\n{section.strip()}\n{tail}".encode(), mode)


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------


def size(text: str) -> int | list[int]:
    """``--size``: one byte count, or several comma-separated."""
    values = [int(part) for part in text.split(",")]
    return values[0] if len(values) == 1 else values


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument(
        "sampler_dir",
        type=Path,
        help="src/agent/samplers/<group>/linux/<sampler> in a Rezolus tree",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--workload",
        choices=sorted(WORKLOADS),
        help="built-in workload (default: from the tracepoint categories)",
    )
    what.add_argument("--command", help="custom shell command to run as the workload")
    p.add_argument("--count", type=int, help="events the built-in workload generates (N)")
    p.add_argument(
        "--size",
        type=size,
        help="bytes per datagram / write (S); the block workload takes several, "
        "comma-separated (S1,S2: N writes of each)",
    )
    p.add_argument(
        "--force-raw", action="store_true", help="load the raw_tp twins even on a BTF kernel"
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument(
        "--write-doc",
        action="store_true",
        help="write the figures into SAMPLER_DIR/README.md between the markers",
    )
    p.add_argument(
        "--announce", action="store_true", help=argparse.SUPPRESS
    )  # tests: print prog ids once attached
    return p


def main(argv: list[str] | None = None, prog: str = "rezolus-sampler prove") -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(prog).parse_args(argv)
    sizes = args.size if isinstance(args.size, list) else [args.size]
    if args.count is not None and args.count < 0 or any(s is not None and s <= 0 for s in sizes):
        print("error: --count must be >= 0 and --size > 0", file=sys.stderr)
        return EXIT_USAGE
    readme = args.sampler_dir / "README.md"

    def announce(ids: list[int]) -> None:
        if args.announce:
            print(f"attached prog ids: {' '.join(map(str, ids))}", file=sys.stderr, flush=True)

    try:
        if args.write_doc:
            _split_doc(readme)  # refuse before measuring anything
        report = prove(
            args.sampler_dir,
            args.workload,
            args.command,
            args.count,
            args.size,
            args.force_raw,
            announce,
        )
        # the sampler as the tree names it, not this machine's checkout path
        shown = str(Path(report["dir"]).relative_to(report["root"]))
        words = [shown if Path(a) == args.sampler_dir else a for a in argv if a != "--announce"]
        report["command_line"] = "rezolus-sampler prove " + shlex.join(words)
        if args.write_doc and not report["errors"]:
            write_doc(readme, measured_section(report))
            report["notes"].append(f"measured cost written to {readme}")
    except CannotProve as e:
        print(f"cannot prove: {e}", file=sys.stderr)
        return EXIT_CANNOT
    except ProveError as e:
        print(f"prove failed: {e}", file=sys.stderr)
        return EXIT_FAIL
    except UsageError as e:
        print(f"usage: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("prove interrupted: everything detached", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(json.dumps(report, indent=2) if args.json else format_text(report))
    if report["errors"]:
        if args.write_doc:
            print(f"prove failed: {readme} not written", file=sys.stderr)
        return EXIT_FAIL
    return 0


if __name__ == "__main__":
    sys.exit(main())
