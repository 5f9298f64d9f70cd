"""Minimal ctypes wrapper over libbpf.so.1 for compiling, loading and measuring
Rezolus-style BPF samplers.

Standard library only.  Used by the proof command, the tests in
``tests/test_bpf_loader.py`` and ``bench/principles_bench.py``.

Cleanup model
-------------
Nothing is ever pinned.  Every attachment is a BPF link owned by a file
descriptor of this process, so the kernel detaches it when the descriptor is
closed -- including when the process dies for any reason (even SIGKILL).
Within a live process:

* ``BpfObject`` is a context manager; ``close()`` destroys every link and then
  the object (idempotent).
* every open ``BpfObject`` is tracked in a weak set that an ``atexit`` hook
  closes, so a normal interpreter exit (including an uncaught exception)
  detaches everything.
* ``cleanup_on_signals()`` turns SIGINT/SIGTERM into exceptions
  (``KeyboardInterrupt`` / ``SystemExit``) for its duration so that ``with``
  blocks unwind and ``close()`` runs.  Wrap long-running code in it::

      with cleanup_on_signals(), bpf_stats_enabled(), BpfObject.open(p) as obj:
          obj.load()
          obj.attach_all()
          ...
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import dataclasses
import errno as _errno
import mmap
import os
import platform
import shutil
import signal
import subprocess
import threading
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = [
    "BpfError",
    "BpfObject",
    "MapInfo",
    "ProgInfo",
    "bpf_available",
    "bpf_stats_enabled",
    "clang_args",
    "cleanup_on_signals",
    "compile_bpf",
    "ensure_fs",
    "mmap_u64_array",
    "possible_cpus",
    "read_bank_sum",
]


class BpfError(RuntimeError):
    """Any failure while compiling, opening, loading or attaching BPF code."""


# --------------------------------------------------------------------------
# compilation
# --------------------------------------------------------------------------

_ARCH_DEFINES = {"x86_64": "-D__TARGET_ARCH_x86", "aarch64": "-D__TARGET_ARCH_arm64"}


def clang_args(rezolus_dir: Path, arch: str = "x86_64") -> list[str]:
    """The exact clang flags Rezolus uses for its BPF objects (without the
    compiler name, source or output)."""
    if arch not in _ARCH_DEFINES:
        raise ValueError(f"unsupported arch {arch!r}; expected one of {sorted(_ARCH_DEFINES)}")
    include = Path(rezolus_dir) / "src" / "agent" / "bpf" / arch
    return [
        "-g",
        "-O2",
        "-target",
        "bpf",
        "-c",
        "-fno-stack-protector",
        f"-I{include}",
        "-fno-unwind-tables",
        _ARCH_DEFINES[arch],
        "-Wall",
        "-Werror",
    ]


def _clang() -> str:
    for name in (os.environ.get("CLANG"), "clang", "clang-14"):
        if name and shutil.which(name):
            return name
    raise BpfError("clang not found (set CLANG or install clang)")


def compile_bpf(src: Path, out: Path, rezolus_dir: Path, arch: str = "x86_64") -> None:
    """Compile ``src`` to the BPF object ``out`` with Rezolus' flags.

    Raises ``BpfError`` carrying clang's stderr on failure."""
    rezolus_dir = Path(rezolus_dir)
    if not (rezolus_dir / "src" / "agent" / "bpf" / "helpers.h").is_file():
        raise BpfError(f"{rezolus_dir} does not look like a Rezolus checkout (no src/agent/bpf/helpers.h)")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    cmd = [_clang(), *clang_args(rezolus_dir, arch), str(src), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BpfError(
            f"clang failed (exit {proc.returncode}) compiling {src}\n"
            f"command: {' '.join(cmd)}\n{proc.stderr.strip()}"
        )


# --------------------------------------------------------------------------
# libbpf / libc bindings
# --------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
_libc.vsnprintf.restype = ctypes.c_int
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.mount.restype = ctypes.c_int

_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()

_vp = ctypes.c_void_p
_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)

# libbpf print levels
_LIBBPF_WARN, _LIBBPF_INFO, _LIBBPF_DEBUG = 0, 1, 2
_log_lines: list[str] = []
_LOG_KEEP = 4000  # lines kept (verifier logs can be long)


def _print_cb(level: int, fmt: bytes, va: int) -> int:
    if level == _LIBBPF_DEBUG and not os.environ.get("BPF_DEBUG"):
        return 0
    buf = ctypes.create_string_buffer(1 << 16)
    n = _libc.vsnprintf(buf, len(buf), fmt, va)
    text = buf.value.decode(errors="replace")
    _log_lines.extend(text.rstrip("\n").splitlines() or [""])
    if len(_log_lines) > _LOG_KEEP:
        del _log_lines[: len(_log_lines) - _LOG_KEEP]
    if os.environ.get("BPF_DEBUG"):
        os.write(2, buf.raw[: max(0, min(n, len(buf) - 1))])
    return 0


_print_cb_ref = _PRINT_FN(_print_cb)  # keep alive for the process lifetime


def _sig(fn: str, restype, *argtypes) -> None:
    f = getattr(_lib, fn)
    f.restype = restype
    f.argtypes = list(argtypes)


def _libbpf() -> ctypes.CDLL:
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        name = os.environ.get("LIBBPF", "libbpf.so.1")
        try:
            _lib = ctypes.CDLL(name, use_errno=True)
        except OSError as e:
            raise BpfError(f"cannot load {name}: {e}") from e
        c_int, c_uint, c_bool, c_size_t, c_char_p = (
            ctypes.c_int, ctypes.c_uint, ctypes.c_bool, ctypes.c_size_t, ctypes.c_char_p,
        )
        _sig("libbpf_set_print", _vp, _PRINT_FN)
        _sig("libbpf_get_error", ctypes.c_long, _vp)
        _sig("bpf_object__open", _vp, c_char_p)
        _sig("bpf_object__load", c_int, _vp)
        _sig("bpf_object__close", None, _vp)
        _sig("bpf_object__next_program", _vp, _vp, _vp)
        _sig("bpf_object__find_program_by_name", _vp, _vp, c_char_p)
        _sig("bpf_object__find_map_by_name", _vp, _vp, c_char_p)
        _sig("bpf_program__name", c_char_p, _vp)
        _sig("bpf_program__section_name", c_char_p, _vp)
        _sig("bpf_program__set_autoload", c_int, _vp, c_bool)
        _sig("bpf_program__autoload", c_bool, _vp)
        _sig("bpf_program__fd", c_int, _vp)
        _sig("bpf_program__insn_cnt", c_size_t, _vp)
        _sig("bpf_program__attach", _vp, _vp)
        _sig("bpf_link__destroy", c_int, _vp)
        _sig("bpf_map__fd", c_int, _vp)
        _sig("bpf_map_lookup_elem", c_int, c_int, _vp, _vp)
        _sig("bpf_map_update_elem", c_int, c_int, _vp, _vp, ctypes.c_uint64)
        _sig("bpf_obj_get_info_by_fd", c_int, c_int, _vp, ctypes.POINTER(ctypes.c_uint32))
        _sig("bpf_prog_load", c_int, c_uint, c_char_p, c_char_p, _vp, c_size_t, _vp)
        _sig("bpf_prog_test_run_opts", c_int, c_int, _vp)
        _lib.libbpf_set_print(_print_cb_ref)
        return _lib


@contextmanager
def _capture_log() -> Iterator[list[str]]:
    start = len(_log_lines)
    captured: list[str] = []
    try:
        yield captured
    finally:
        captured.extend(_log_lines[start:])


def _ptr_err(ptr: int | None) -> int:
    """Return a positive errno if a libbpf pointer result signals failure."""
    if not ptr:
        return ctypes.get_errno() or _errno.EINVAL
    err = _libbpf().libbpf_get_error(ptr)
    return -err if err else 0


# --------------------------------------------------------------------------
# kernel info structs (layout from include/uapi/linux/bpf.h, checked against
# /usr/include/linux/bpf.h; the kernel accepts shorter structs than its own)
# --------------------------------------------------------------------------

_u8, _u32, _u64 = ctypes.c_uint8, ctypes.c_uint32, ctypes.c_uint64


class _BpfProgInfo(ctypes.Structure):
    _fields_ = [
        ("type", _u32),
        ("id", _u32),
        ("tag", _u8 * 8),
        ("jited_prog_len", _u32),
        ("xlated_prog_len", _u32),
        ("jited_prog_insns", _u64),
        ("xlated_prog_insns", _u64),
        ("load_time", _u64),
        ("created_by_uid", _u32),
        ("nr_map_ids", _u32),
        ("map_ids", _u64),
        ("name", ctypes.c_char * 16),
        ("ifindex", _u32),
        ("gpl_compatible", _u32),  # bitfield :1 + 31 bits padding
        ("netns_dev", _u64),
        ("netns_ino", _u64),
        ("nr_jited_ksyms", _u32),
        ("nr_jited_func_lens", _u32),
        ("jited_ksyms", _u64),
        ("jited_func_lens", _u64),
        ("btf_id", _u32),
        ("func_info_rec_size", _u32),
        ("func_info", _u64),
        ("nr_func_info", _u32),
        ("nr_line_info", _u32),
        ("line_info", _u64),
        ("jited_line_info", _u64),
        ("nr_jited_line_info", _u32),
        ("line_info_rec_size", _u32),
        ("jited_line_info_rec_size", _u32),
        ("nr_prog_tags", _u32),
        ("prog_tags", _u64),
        ("run_time_ns", _u64),
        ("run_cnt", _u64),
        ("recursion_misses", _u64),
        ("verified_insns", _u32),
        ("attach_btf_obj_id", _u32),
        ("attach_btf_id", _u32),
        ("_pad", _u32),
    ]


class _BpfMapInfo(ctypes.Structure):
    _fields_ = [
        ("type", _u32),
        ("id", _u32),
        ("key_size", _u32),
        ("value_size", _u32),
        ("max_entries", _u32),
        ("map_flags", _u32),
        ("name", ctypes.c_char * 16),
        ("ifindex", _u32),
        ("btf_vmlinux_value_type_id", _u32),
        ("netns_dev", _u64),
        ("netns_ino", _u64),
        ("btf_id", _u32),
        ("btf_key_type_id", _u32),
        ("btf_value_type_id", _u32),
        ("_pad", _u32),
        ("map_extra", _u64),
    ]


class _BpfTestRunOpts(ctypes.Structure):
    """libbpf's ``struct bpf_test_run_opts`` (bpf.h, libbpf >= 0.7)."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", _u32),
        ("data_size_out", _u32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", _u32),
        ("ctx_size_out", _u32),
        ("retval", _u32),
        ("repeat", ctypes.c_int),
        ("duration", _u32),
        ("flags", _u32),
        ("cpu", _u32),
        ("batch_size", _u32),
    ]


assert ctypes.sizeof(_BpfTestRunOpts) == 80, ctypes.sizeof(_BpfTestRunOpts)  # LP64
assert ctypes.sizeof(_BpfProgInfo) == 232, ctypes.sizeof(_BpfProgInfo)
assert _BpfProgInfo.run_time_ns.offset == 192 and _BpfProgInfo.verified_insns.offset == 216
assert ctypes.sizeof(_BpfMapInfo) == 88, ctypes.sizeof(_BpfMapInfo)

BPF_F_MMAPABLE = 1 << 10
BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2


@dataclasses.dataclass(frozen=True)
class ProgInfo:
    """Kernel-reported facts about one loaded program.

    ``verified_insns`` is the number of instructions the verifier processed
    (all explored paths); ``xlated_insns`` is the post-verifier program length
    (``xlated_prog_len / 8``); ``insn_cnt`` is libbpf's pre-verifier count.
    ``run_time_ns``/``run_cnt`` only advance while BPF stats are enabled."""

    name: str
    id: int
    type: int
    run_time_ns: int
    run_cnt: int
    recursion_misses: int
    verified_insns: int
    xlated_insns: int
    jited_len: int
    insn_cnt: int

    @property
    def ns_per_run(self) -> float:
        return self.run_time_ns / self.run_cnt if self.run_cnt else float("nan")


@dataclasses.dataclass(frozen=True)
class MapInfo:
    """Kernel-reported map definition."""

    name: str
    id: int
    type: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int

    @property
    def mmapable(self) -> bool:
        return bool(self.map_flags & BPF_F_MMAPABLE)


def _get_info(fd: int, struct: ctypes.Structure) -> None:
    length = ctypes.c_uint32(ctypes.sizeof(struct))
    rc = _libbpf().bpf_obj_get_info_by_fd(fd, ctypes.byref(struct), ctypes.byref(length))
    if rc != 0:
        err = -rc if rc < 0 else ctypes.get_errno()
        raise BpfError(f"bpf_obj_get_info_by_fd({fd}) failed: {os.strerror(err)}")


# --------------------------------------------------------------------------
# objects
# --------------------------------------------------------------------------

_live_objects: "weakref.WeakSet[BpfObject]" = weakref.WeakSet()


@atexit.register
def _close_live_objects() -> None:
    for obj in list(_live_objects):
        try:
            obj.close()
        except Exception:
            pass


class BpfObject:
    """An opened (and optionally loaded/attached) BPF ELF object.

    Use as a context manager; ``close()`` detaches every link and frees the
    object.  Nothing is pinned."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lib = _libbpf()
        self._obj: int | None = None
        self._links: list[tuple[str, int]] = []
        self._loaded = False
        with _capture_log() as log:
            ptr = self._lib.bpf_object__open(str(self.path).encode())
        err = _ptr_err(ptr)
        if err:
            raise BpfError(f"bpf_object__open({self.path}) failed: {os.strerror(err)}\n" + "\n".join(log))
        self._obj = ptr
        _live_objects.add(self)

    @classmethod
    def open(cls, path: Path) -> "BpfObject":
        """Open an ELF object file (not yet loaded into the kernel)."""
        return cls(path)

    # -- context manager --------------------------------------------------
    def __enter__(self) -> "BpfObject":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- programs ----------------------------------------------------------
    def _require_open(self) -> int:
        if not self._obj:
            raise BpfError("BPF object is closed")
        return self._obj

    def _programs(self) -> Iterator[int]:
        obj = self._require_open()
        prog = self._lib.bpf_object__next_program(obj, None)
        while prog:
            yield prog
            prog = self._lib.bpf_object__next_program(obj, prog)

    def _prog(self, name: str) -> int:
        prog = self._lib.bpf_object__find_program_by_name(self._require_open(), name.encode())
        if not prog:
            raise BpfError(f"no program named {name!r} in {self.path} (have: {self.program_names()})")
        return prog

    def program_names(self) -> list[str]:
        """Names of all programs (C function names) in the object."""
        return [self._lib.bpf_program__name(p).decode() for p in self._programs()]

    def section_name(self, name: str) -> str:
        """ELF section (``SEC(...)``) of a program, e.g. ``tp_btf/sys_enter``."""
        return self._lib.bpf_program__section_name(self._prog(name)).decode()

    def set_autoload(self, name: str, autoload: bool) -> None:
        """Choose whether ``load()`` loads this program (only before load)."""
        rc = self._lib.bpf_program__set_autoload(self._prog(name), bool(autoload))
        if rc != 0:
            raise BpfError(f"set_autoload({name!r}) failed: {os.strerror(-rc)}")

    def load(self) -> None:
        """Load maps and autoload programs into the kernel.

        On failure raises ``BpfError`` whose message contains libbpf's output,
        including the kernel verifier log."""
        with _capture_log() as log:
            rc = self._lib.bpf_object__load(self._require_open())
        if rc != 0:
            raise BpfError(
                f"loading {self.path} failed: {os.strerror(-rc) if rc < 0 else rc}\n" + "\n".join(log)
            )
        self._loaded = True

    def attach(self, name: str) -> None:
        """Attach one loaded program with ``bpf_program__attach`` (the SEC name
        picks tp_btf / raw_tp / tracepoint / kprobe).  The link is owned by this
        object: ``detach_all``/``close`` destroy it."""
        if not self._loaded:
            raise BpfError("attach() called before load()")
        prog = self._prog(name)
        with _capture_log() as log:
            ctypes.set_errno(0)
            link = self._lib.bpf_program__attach(prog)
        err = _ptr_err(link)
        if err:
            raise BpfError(f"attaching {name!r} failed: {os.strerror(err)}\n" + "\n".join(log))
        self._links.append((name, link))

    def attach_all(self) -> list[str]:
        """Attach every loaded (autoload) program (see ``attach``).  Returns the
        names attached.  On failure, links made so far are destroyed."""
        if not self._loaded:
            raise BpfError("attach_all() called before load()")
        attached: list[str] = []
        try:
            for prog in self._programs():
                if not self._lib.bpf_program__autoload(prog):
                    continue
                name = self._lib.bpf_program__name(prog).decode()
                self.attach(name)
                attached.append(name)
        except BaseException:
            self.detach_all()
            raise
        return attached

    def detach_all(self) -> None:
        """Destroy every link created by ``attach_all`` (programs stay loaded)."""
        while self._links:
            _, link = self._links.pop()
            self._lib.bpf_link__destroy(link)

    def prog_fd(self, name: str) -> int:
        fd = self._lib.bpf_program__fd(self._prog(name))
        if fd < 0:
            raise BpfError(f"program {name!r} is not loaded")
        return fd

    def prog_info(self, name: str) -> ProgInfo:
        """Kernel statistics and sizes for a loaded program."""
        prog = self._prog(name)
        info = _BpfProgInfo()
        _get_info(self.prog_fd(name), info)
        return ProgInfo(
            name=name,
            id=info.id,
            type=info.type,
            run_time_ns=info.run_time_ns,
            run_cnt=info.run_cnt,
            recursion_misses=info.recursion_misses,
            verified_insns=info.verified_insns,
            xlated_insns=info.xlated_prog_len // 8,
            jited_len=info.jited_prog_len,
            insn_cnt=int(self._lib.bpf_program__insn_cnt(prog)),
        )

    # -- maps ---------------------------------------------------------------
    def map_fd(self, name: str) -> int:
        """File descriptor of a loaded map (owned by the object; do not close)."""
        m = self._lib.bpf_object__find_map_by_name(self._require_open(), name.encode())
        if not m:
            raise BpfError(f"no map named {name!r} in {self.path}")
        fd = self._lib.bpf_map__fd(m)
        if fd < 0:
            raise BpfError(f"map {name!r} is not created (call load() first)")
        return fd

    def map_info(self, name: str) -> MapInfo:
        """Kernel view of a map: type, sizes, flags."""
        info = _BpfMapInfo()
        _get_info(self.map_fd(name), info)
        return MapInfo(
            name=name,
            id=info.id,
            type=info.type,
            key_size=info.key_size,
            value_size=info.value_size,
            max_entries=info.max_entries,
            map_flags=info.map_flags,
        )

    def test_run(self, name: str, ctx: bytes) -> int:
        """Run a loaded program once with ``BPF_PROG_TEST_RUN`` on the context
        bytes ``ctx`` and return its return value (u32).  For program types the
        kernel can run on demand, e.g. ``SEC("syscall")``, whose context is
        these bytes."""
        buf = ctypes.create_string_buffer(ctx, len(ctx))
        opts = _BpfTestRunOpts(
            sz=ctypes.sizeof(_BpfTestRunOpts),
            ctx_in=ctypes.cast(buf, _vp),
            ctx_size_in=len(ctx),
        )
        rc = self._lib.bpf_prog_test_run_opts(self.prog_fd(name), ctypes.byref(opts))
        if rc != 0:
            err = -rc if rc < 0 else ctypes.get_errno()
            raise BpfError(f"test run of {name!r} failed: {os.strerror(err)}")
        return opts.retval

    def lookup_u64(self, name: str, key: int) -> int | None:
        """Value of ``key`` (u32) in a map with u64 values, or None if absent."""
        k = ctypes.c_uint32(key)
        v = ctypes.c_uint64(0)
        rc = self._lib.bpf_map_lookup_elem(self.map_fd(name), ctypes.byref(k), ctypes.byref(v))
        if rc != 0:
            err = -rc if rc < 0 else ctypes.get_errno()
            if err == _errno.ENOENT:
                return None
            raise BpfError(f"lookup in {name!r} failed: {os.strerror(err)}")
        return v.value

    def update_u64(self, name: str, key: int, value: int) -> None:
        """Set ``key`` (u32) of a map with u64 values (``BPF_ANY``), as a Rezolus
        ``.map(name, values)`` registration fills a lookup table."""
        k, v = ctypes.c_uint32(key), ctypes.c_uint64(value)
        rc = self._lib.bpf_map_update_elem(self.map_fd(name), ctypes.byref(k), ctypes.byref(v), 0)
        if rc != 0:
            err = -rc if rc < 0 else ctypes.get_errno()
            raise BpfError(f"update of {name!r}[{key}] failed: {os.strerror(err)}")

    # -- teardown -----------------------------------------------------------
    def close(self) -> None:
        """Destroy all links, then unload and free the object.  Idempotent."""
        self.detach_all()
        obj, self._obj = self._obj, None
        if obj:
            self._lib.bpf_object__close(obj)
        self._loaded = False
        _live_objects.discard(self)


# --------------------------------------------------------------------------
# mmapped counter arrays
# --------------------------------------------------------------------------


def mmap_u64_array(map_fd: int, n_values: int) -> memoryview:
    """Map the first ``n_values`` u64 of a BPF_F_MMAPABLE array map read-only.

    Returns a ``memoryview`` of format ``'Q'``; the mapping (page-rounded) stays
    alive as long as the view or its ``.obj`` does.  Call ``view.release()``
    and ``view.obj.close()`` to unmap eagerly."""
    page = mmap.PAGESIZE
    size = max(page, (n_values * 8 + page - 1) // page * page)
    mm = mmap.mmap(map_fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    full = memoryview(mm).cast("Q")
    view = full[:n_values]
    full.release()
    return view


def read_bank_sum(view: memoryview, width: int, slot: int, ncpus: int) -> int:
    """Sum one counter over a per-CPU bank: ``sum(view[cpu*width + slot])``
    for ``cpu`` in ``range(ncpus)``."""
    if not 0 <= slot < width:
        raise ValueError(f"slot {slot} outside bank width {width}")
    return sum(view[slot : ncpus * width : width])


def possible_cpus(path: str = "/sys/devices/system/cpu/possible") -> int:
    """Number of possible CPUs: highest id in the possible mask plus one."""
    text = Path(path).read_text().strip()
    highest = -1
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        highest = max(highest, int(part.split("-")[-1]))
    if highest < 0:
        raise ValueError(f"cannot parse {path}: {text!r}")
    return highest + 1


# --------------------------------------------------------------------------
# BPF run-time statistics
# --------------------------------------------------------------------------

_BPF_SYSCALL = {"x86_64": 321, "aarch64": 280}
_BPF_ENABLE_STATS = 32
_BPF_STATS_RUN_TIME = 0
_STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")


def _enable_stats_fd() -> int:
    nr = _BPF_SYSCALL.get(platform.machine())
    if nr is None:
        return -1
    attr = (ctypes.c_uint32 * 2)(_BPF_STATS_RUN_TIME, 0)  # union bpf_attr.enable_stats
    fd = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(_BPF_ENABLE_STATS), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr)))
    return int(fd)


@contextmanager
def bpf_stats_enabled() -> Iterator[str]:
    """Enable kernel BPF run-time stats (run_time_ns/run_cnt) while inside.

    Uses ``bpf(BPF_ENABLE_STATS)``: the kernel keeps stats on while the
    returned fd is open and drops this reference when it is closed, even if the
    process dies.  Falls back to writing ``/proc/sys/kernel/bpf_stats_enabled``
    and restoring its previous value.  Yields the mechanism used
    (``"fd"`` or ``"sysctl"``)."""
    fd = _enable_stats_fd()
    if fd >= 0:
        try:
            yield "fd"
        finally:
            os.close(fd)
        return
    err = ctypes.get_errno()
    try:
        previous = _STATS_SYSCTL.read_text().strip()
        _STATS_SYSCTL.write_text("1\n")
    except OSError as e:
        raise BpfError(
            f"cannot enable BPF stats: BPF_ENABLE_STATS failed ({os.strerror(err)}) "
            f"and {_STATS_SYSCTL} is not writable ({e})"
        ) from e
    try:
        yield "sysctl"
    finally:
        _STATS_SYSCTL.write_text(previous + "\n")


# --------------------------------------------------------------------------
# environment
# --------------------------------------------------------------------------

_FS = (("tracefs", "/sys/kernel/tracing", "tracefs"), ("bpf", "/sys/fs/bpf", "bpf"))


def _mounted_types() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3:
            out[fields[1]] = fields[2]
    return out


def ensure_fs() -> list[str]:
    """Mount tracefs at /sys/kernel/tracing and bpffs at /sys/fs/bpf if they
    are not mounted yet.  Returns the mount points that were mounted.
    Requires root; raises ``BpfError`` otherwise or if mount(2) fails."""
    mounted = _mounted_types()
    todo = [fs for fs in _FS if mounted.get(fs[1]) != fs[2]]
    if not todo:
        return []
    if os.geteuid() != 0:
        raise BpfError(
            "tracefs/bpffs not mounted and not running as root: mount them with "
            "`mount -t tracefs tracefs /sys/kernel/tracing; mount -t bpf bpf /sys/fs/bpf`"
        )
    done: list[str] = []
    for source, target, fstype in todo:
        os.makedirs(target, exist_ok=True)
        if _libc.mount(source.encode(), target.encode(), fstype.encode(), 0, None) != 0:
            err = ctypes.get_errno()
            raise BpfError(f"mount -t {fstype} {source} {target} failed: {os.strerror(err)}")
        done.append(target)
    return done


def bpf_available(require_btf: bool = True) -> tuple[bool, str]:
    """Whether this process can load BPF programs, with a reason string
    suitable for ``pytest.skip``.  ``require_btf=False`` accepts kernels
    without BTF (raw_tp and tracepoint programs still load there)."""
    if platform.system() != "Linux":
        return False, f"BPF needs Linux (running on {platform.system()})"
    if os.geteuid() != 0:
        return False, "BPF tests need root (CAP_BPF + CAP_PERFMON); not running as root"
    try:
        lib = _libbpf()
    except BpfError as e:
        return False, str(e)
    # r0 = 0; exit  -- the smallest valid socket filter
    insns = (ctypes.c_uint8 * 16)(0xB7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0)
    ctypes.set_errno(0)
    with _capture_log():
        fd = lib.bpf_prog_load(1, b"probe", b"GPL", ctypes.cast(insns, _vp), 2, None)
    if fd < 0:
        return False, f"kernel refused a trivial BPF program: {os.strerror(-fd)}"
    os.close(fd)
    if require_btf and not Path("/sys/kernel/btf/vmlinux").exists():
        return False, "kernel has no BTF (/sys/kernel/btf/vmlinux missing); tp_btf cannot attach"
    return True, "BPF available"


@contextmanager
def cleanup_on_signals(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Turn SIGINT into ``KeyboardInterrupt`` and SIGTERM into ``SystemExit``
    while inside, so enclosing ``with BpfObject`` blocks unwind and detach;
    previous handlers are restored on exit.  No-op outside the main thread.
    The module's ``atexit`` hook additionally closes any still-open object."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, _frame) -> None:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, _raise) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
