"""Every label index is bounded in a way the verifier accepts (issue 8).

A matrix of generated samplers is rendered into a scratch Rezolus tree and
every program is loaded through the kernel verifier:

- label sizes 1, 2, 3, 7, 8, 9, 31, 32, 33, 64, 255 and 256 values, given as
  listed values or as a bare cardinality, with and without an `overflow:`
  value;
- fixed slots (`labels:`), computed slots (`index:`), and families of two and
  three labels mixing both (and a constant index beyond the values, which the
  model sends to the overflow value);
- histogram families (1 to 16 maps) whose labels choose the map by the same
  rule, including records whose indexes are all constants;
- index expressions reading a real tracepoint argument (tp_btf/raw_tp) or
  record field (classic) of each C type: u8, u16, u32, u64, s32, s64, bool and
  an enum; `test_sources_have_the_types_they_stand_for` checks each choice
  against the bundled type index of both architectures;
- attach styles tp_btf (both twins loaded, one set at a time), raw_tp and the
  classic tracepoint.

By default a representative subset runs (every size, value form, overflow
choice, slot kind, argument type and attach style at least once, and every
size with all four value-form x overflow pairs per attach style).
`REZOLUS_SAMPLER_FULL=1` runs the whole cross product: every argument type x
value form x overflow choice in all three attach styles with all sizes fixed
and computed and every multi-label family, plus every computed family alone
in a sampler of its own.

Then the rule the model documents (README "Answers reference", principles
P2: "An index out of range never writes out of bounds: that increment is
dropped, or counted into the label's declared overflow value"; spec/expr.py:
an index is held in a u64, so a negative value wraps above every bound) is
checked where it counts: tracepoints fired with known values (invalid
syscall numbers at raw_syscalls:sys_enter, arguments of such a syscall,
real-time signals to a child) must move exactly the slots the rule names,
in both twins and in the classic tracepoint, counters and histograms alike.

Found by this matrix and fixed (emit/program.py):
- a hook whose histogram records all had constant indexes declared
  `u64 combo;` without using it, which Rezolus' -Wall -Werror build refuses
  (`test_constant_index_histogram_declares_no_unused_local`);
- the model accepted a hook whose program references more than the 64 maps
  the kernel allows one program (each histogram label combination is a map):
  the sampler rendered and compiled, then failed to load. Now refused at the
  prompt, at exactly that limit (`test_more_maps_than_the_kernel_allows_are_refused`).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support import ARCHES, clang_command, make_tree, render_files, rezolus_dir, write_sampler

from rezolus_sampler.kernel import bpf
from rezolus_sampler.kernel import prove as prove_mod
from rezolus_sampler.kernel.histogram import REZOLUS
from rezolus_sampler.spec import vmlinux
from rezolus_sampler.spec.ctype import CType

pytestmark = pytest.mark.skipif(rezolus_dir() is None, reason="no Rezolus checkout")

FULL = os.environ.get("REZOLUS_SAMPLER_FULL") == "1"
_BPF_OK, _BPF_WHY = bpf.bpf_available()
needs_bpf = pytest.mark.skipif(not _BPF_OK, reason=f"cannot load BPF here: {_BPF_WHY}")

SIZES = (1, 2, 3, 7, 8, 9, 31, 32, 33, 64, 255, 256)
# a histogram family has at most 16 label combinations (one map each); its index
# only chooses the map, but it is bounded and routed by the same rule
HIST_SIZES = (1, 2, 3, 7, 8, 9, 16)
TYPES = ("u8", "u16", "u32", "u64", "s32", "s64", "bool", "enum")
# the type index's codes for the C types above (ctype.py); an enum is any "e..." code
TYPE_CODES = {"u8": "u1", "u16": "u2", "u32": "u4", "u64": "u8", "s32": "i4", "s64": "i8",
              "bool": "b1"}
GROUP = "bounds"
MAX_SLOTS_PER_MAP = 512  # model.MAX_BANK_SLOTS
MASK64 = (1 << 64) - 1


# --------------------------------------------------------------------------
# where an index of each C type comes from
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Source:
    """A real tracepoint argument (or classic record field) of one C type."""

    type: str
    tracepoint: str  # the answer: tp_btf/raw_tp name the arguments, classic does not
    expr: str  # the index expression: the argument or field itself
    position: int | str  # tp_btf/raw_tp: argument number; classic: record field name

    @property
    def event(self) -> str:
        return self.tracepoint.split("(")[0]


BTF_SOURCES = {
    s.type: s
    for s in (
        Source("u8", "block:block_rq_complete(rq, error, nr_bytes)", "error", 1),
        Source("u16", "bridge:br_fdb_add(ndm, dev, addr, vid, nlh_flags)", "vid", 3),
        Source("u32", "block:block_rq_complete(rq, error, nr_bytes)", "nr_bytes", 2),
        Source("u64", "kmem:kmalloc(call_site, ptr, bytes_req, bytes_alloc, gfp_flags, node)",
               "bytes_req", 2),
        Source("s32", "signal:signal_generate(sig, info, task, group, result)", "sig", 0),
        Source("s64", "raw_syscalls:sys_enter(regs, id)", "id", 1),
        Source("bool", "sched:sched_switch(preempt, prev, next, prev_state)", "preempt", 0),
        Source("enum", "timer:hrtimer_start(hrtimer, mode)", "mode", 1),
    )
}
CLASSIC_SOURCES = {
    s.type: s
    for s in (
        Source("u8", "net:net_dev_start_xmit", "args->ip_summed", "ip_summed"),
        Source("u16", "net:net_dev_start_xmit", "args->queue_mapping", "queue_mapping"),
        Source("u32", "net:net_dev_start_xmit", "args->len", "len"),
        Source("u64", "raw_syscalls:sys_enter", "args->args[0]", "args"),
        Source("s32", "signal:signal_generate", "args->sig", "sig"),
        Source("s64", "raw_syscalls:sys_enter", "args->id", "id"),
        Source("bool", "net:net_dev_start_xmit", "args->vlan_tagged", "vlan_tagged"),
        Source("enum", "timer:hrtimer_start", "args->mode", "mode"),
    )
}
ATTACH_SHORT = {"tp_btf": "btf", "raw_tp": "raw", "tracepoint": "cls"}


def sources(attach: str) -> dict[str, Source]:
    return CLASSIC_SOURCES if attach == "tracepoint" else BTF_SOURCES


# --------------------------------------------------------------------------
# the matrix
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LabelCase:
    size: int
    listed: bool  # explicit values (v0, v1, ...) or a bare cardinality (0..size-1)
    overflow: bool  # declares an overflow value: listed, the last; a cardinality, the middle
    how: str  # "index": the source; "shifted": the source + 1; "fixed": labels:;
    #           "const": a constant index beyond the values (needs an overflow value)

    @property
    def values(self) -> list[str]:
        prefix = "v" if self.listed else ""
        return [f"{prefix}{i}" for i in range(self.size)]

    @property
    def overflow_value(self) -> str | None:
        if not self.overflow:
            return None
        return self.values[-1] if self.listed else self.values[self.size // 2]

    def answer(self) -> object:
        values = self.values if self.listed else self.size
        return {"values": values, "overflow": self.overflow_value} if self.overflow else values

    def describe(self) -> str:
        form = "listed" if self.listed else "count"
        return f"{self.how}:{self.size}{form}{'+overflow' if self.overflow else ''}"


@dataclasses.dataclass(frozen=True)
class FamilyCase:
    labels: tuple[LabelCase, ...]

    @property
    def slots(self) -> int:
        n = 1
        for label in self.labels:
            n *= label.size
        return n

    def describe(self) -> str:
        return " x ".join(label.describe() for label in self.labels)


def one(size: int, listed: bool, overflow: bool, how: str = "index") -> FamilyCase:
    return FamilyCase((LabelCase(size, listed, overflow, how),))


# Families of two and three labels (each at most 256 label combinations).
MULTI = (
    FamilyCase((LabelCase(8, False, False, "index"), LabelCase(32, True, False, "shifted"))),
    FamilyCase((LabelCase(3, True, False, "fixed"), LabelCase(7, False, True, "index"))),
    FamilyCase((LabelCase(2, False, True, "index"), LabelCase(128, False, False, "shifted"))),
    FamilyCase((LabelCase(2, True, False, "fixed"), LabelCase(4, False, False, "index"),
                LabelCase(32, True, True, "shifted"))),
    FamilyCase((LabelCase(9, True, True, "index"), LabelCase(4, False, True, "const"))),
    FamilyCase((LabelCase(1, False, False, "index"), LabelCase(255, True, True, "shifted"))),
    # both labels through overflow selects, the outer one times a stride: clang may
    # compute `value * 3` before the select (found by the property-based tests when
    # the bound was put on the label value instead of at the access)
    FamilyCase((LabelCase(65, False, True, "index"), LabelCase(3, False, True, "shifted"))),
)


# Histogram families of several labels, or of constant indexes only (at most 16 maps).
HIST_MULTI = (
    FamilyCase((LabelCase(2, False, False, "index"), LabelCase(8, True, False, "shifted"))),
    FamilyCase((LabelCase(4, False, False, "index"), LabelCase(3, True, True, "const"))),
    FamilyCase((LabelCase(3, True, True, "const"),)),
    FamilyCase((LabelCase(2, True, False, "fixed"), LabelCase(8, False, True, "index"))),
)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One generated sampler: families indexed from one source in one attach style."""

    name: str
    attach: str
    source: Source
    families: tuple[FamilyCase, ...]
    histograms: tuple[FamilyCase, ...] = ()
    shared: bool = False  # every counter family in one map (at most 512 slots)

    def answers(self) -> dict:
        return cell_answers(self)


def _maps(families: tuple[FamilyCase, ...], shared: bool) -> list[str]:
    """Map per family: small families share `counters` (so bases and a shared
    bank width are exercised) while it holds at most 512 slots; the others get
    a bank of their own (W = roundup(size, 8): the bound check is tight)."""
    used, out = 0, []
    for i, family in enumerate(families):
        if shared or family.slots <= 64 and used + family.slots <= MAX_SLOTS_PER_MAP:
            used += family.slots
            out.append("counters")
        else:
            out.append(f"f{i}")
    return out


def _update(family: FamilyCase, source: Source) -> tuple[dict, dict]:
    """The labels answer of a family and its update at the source's hook."""
    labels, fixed, index = {}, {}, {}
    for j, label in enumerate(family.labels):
        key = f"l{j}"
        labels[key] = label.answer()
        if label.how == "fixed":
            fixed[key] = label.values[-1]  # the highest offset
        elif label.how == "const":
            index[key] = str(label.size + 3)
        elif label.how == "shifted":
            index[key] = f"{source.expr} + 1"
        else:
            index[key] = source.expr
    update: dict = {"at": source.event}
    if fixed:
        update["labels"] = fixed
    if index:
        update["index"] = index
    return labels, update


def cell_answers(cell: Cell) -> dict:
    source = cell.source
    counters, histograms = [], []
    for i, (family, map_name) in enumerate(zip(cell.families, _maps(cell.families, cell.shared))):
        labels, increment = _update(family, source)
        counters.append({
            "name": f"{GROUP}_{cell.name}_f{i}",
            "description": f"Bounds matrix family {i}: {family.describe()}",
            "map": map_name,
            "labels": labels,
            "increments": [increment],
        })
    for i, family in enumerate(cell.histograms):
        labels, record = _update(family, source)
        histograms.append({
            "name": f"{GROUP}_{cell.name}_h{i}",
            "description": f"Bounds matrix histogram {i}: {family.describe()}",
            "labels": labels,
            "records": [record | {"value": source.expr}],
        })
    return {
        "group": GROUP,
        "sampler": cell.name,
        "description": f"Bounds matrix: {cell.attach} indexes from {source.type} {source.expr}",
        "attach": cell.attach,
        "layout": "totals",
        "tracepoints": [source.tracepoint if cell.attach != "tracepoint" else source.event],
        "counters": counters,
        "histograms": histograms,
    }


def default_cells() -> list[Cell]:
    """Per attach style (tp_btf, classic) one sampler per argument type. Sampler t
    gives size i listed values when (i + t) is odd and an overflow value when
    (i // 2 + t // 2) is odd: over the types every size meets all four
    combinations. Two fixed-slot families, one multi-label family and one
    histogram family rotate; one sampler per style fills a 512-slot bank."""
    cells = []
    for attach in ("tp_btf", "tracepoint"):
        for t, kind in enumerate(TYPES):
            families = [one(size, (i + t) % 2 == 1, (i // 2 + t // 2) % 2 == 1)
                        for i, size in enumerate(SIZES)]
            for j in (0, 1):
                families.append(one(SIZES[(2 * t + j) % len(SIZES)], j == 1, t % 2 == 1, "fixed"))
            families.append(MULTI[t % len(MULTI)])
            hist = one(HIST_SIZES[t % len(HIST_SIZES)], t % 2 == 0, (t // 2) % 2 == 1)
            cells.append(Cell(f"{ATTACH_SHORT[attach]}_{kind}", attach, sources(attach)[kind],
                              tuple(families), (hist, HIST_MULTI[t % len(HIST_MULTI)])))
        kind = "s64" if attach == "tp_btf" else "u64"
        cells.append(Cell(f"{ATTACH_SHORT[attach]}_{kind}_wide", attach, sources(attach)[kind],
                          (one(256, False, True), one(255, True, False), one(1, False, False)),
                          shared=True))
        # a hook where no histogram picks its map at run time (constant indexes only)
        cells.append(Cell(f"{ATTACH_SHORT[attach]}_{kind}_consthist", attach,
                          sources(attach)[kind], (one(8, True, True),), (HIST_MULTI[2],)))
    # raw_tp alone (no twins): the raw twin's reads in a program of their own
    cells.append(Cell("raw_s64", "raw_tp", BTF_SOURCES["s64"],
                      tuple(one(s, i % 2 == 0, i % 3 == 0) for i, s in enumerate(SIZES))
                      + (MULTI[3], MULTI[4]), (one(16, True, True),)))
    return cells


def full_cells() -> list[Cell]:
    """The cross product: attach x type x value form x overflow, each sampler with
    every size computed and fixed, every multi-label family and every histogram
    shape; then every computed family of that product alone in a sampler, and per
    attach x type a hook whose histograms all have constant indexes. The
    histogram shapes go in samplers of their own: together with the counters
    they would exceed the 64 maps the kernel lets one program use."""
    cells = []
    for attach in ("tp_btf", "raw_tp", "tracepoint"):
        for kind in TYPES:
            for listed, overflow in itertools.product((False, True), repeat=2):
                tag = f"{'l' if listed else 'c'}{'o' if overflow else 'd'}"
                families = [one(s, listed, overflow) for s in SIZES]
                families += [one(s, listed, overflow, "fixed") for s in SIZES]
                families += list(MULTI)
                cells.append(Cell(f"{ATTACH_SHORT[attach]}_{kind}_{tag}", attach,
                                  sources(attach)[kind], tuple(families)))
                # histograms apart: each label combination is a map, and one program
                # may reference at most 64 (46 and 47 maps here)
                for part, hists in enumerate((tuple(one(s, listed, overflow) for s in HIST_SIZES),
                                              HIST_MULTI)):
                    cells.append(Cell(f"{ATTACH_SHORT[attach]}_{kind}_{tag}_h{part}", attach,
                                      sources(attach)[kind], (), hists))
                for size in SIZES:
                    cells.append(Cell(f"{ATTACH_SHORT[attach]}_{kind}_{tag}_{size}", attach,
                                      sources(attach)[kind], (one(size, listed, overflow),)))
            # histograms with constant indexes only: no map is picked at run time
            cells.append(Cell(f"{ATTACH_SHORT[attach]}_{kind}_consthist", attach,
                              sources(attach)[kind], (one(8, True, True),), (HIST_MULTI[2],)))
    return cells


CELLS = full_cells() if FULL else default_cells()


def test_default_subset_covers_every_dimension() -> None:
    """The subset that runs by default still meets every value of every dimension."""
    cells = default_cells()
    assert {c.attach for c in cells} == {"tp_btf", "raw_tp", "tracepoint"}
    for attach in ("tp_btf", "tracepoint"):
        mine = [c for c in cells if c.attach == attach]
        assert {c.source.type for c in mine} == set(TYPES)
        computed = {(lc.size, lc.listed, lc.overflow) for c in mine for f in c.families
                    for lc in f.labels if len(f.labels) == 1 and lc.how == "index"}
        assert computed == set(itertools.product(SIZES, (False, True), (False, True))), attach
        fixed = {lc.size for c in mine for f in c.families for lc in f.labels if lc.how == "fixed"}
        assert set(SIZES) <= fixed, fixed
        assert {f for c in mine for f in c.families if len(f.labels) > 1} == set(MULTI)
        assert {f.labels[0].size for c in mine for f in c.histograms
                if len(f.labels) == 1 and f.labels[0].how == "index"} == set(HIST_SIZES)
        assert {f for c in mine for f in c.histograms} >= set(HIST_MULTI)
        assert any(c.shared and sum(f.slots for f in c.families) == MAX_SLOTS_PER_MAP
                   for c in mine)


# --------------------------------------------------------------------------
# the sources are what they claim
# --------------------------------------------------------------------------


@pytest.mark.parametrize("attach", ["tp_btf", "tracepoint"])
def test_sources_have_the_types_they_stand_for(attach: str) -> None:
    root = rezolus_dir()
    for arch in vmlinux.ARCHES:
        index = vmlinux.index(root, arch)
        for kind, source in sources(attach).items():
            event = source.event.split(":")[1]
            if attach == "tracepoint":
                fields = {m.name: m for m in index.raw_record(event) or ()}
                assert source.position in fields, f"{arch}: {event} has no {source.position}"
                ctype = fields[source.position].type
                if ctype.kind == "array":  # args->args[0]: the element
                    ctype = CType(ctype.code.split("]", 1)[1])
            else:
                args = index.tracepoints[event]
                ctype = args[source.position][1]
            if kind == "enum":
                assert ctype.kind == "enum", f"{arch} {source.expr}: {ctype.code}"
            else:
                assert ctype.code == TYPE_CODES[kind], f"{arch} {source.expr}: {ctype.code}"


# --------------------------------------------------------------------------
# rendering, compiling, loading
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("bounds") / "rezolus")


@pytest.fixture(scope="module")
def built(tree: Path, tmp_path_factory) -> dict[str, tuple[Path, Path | None, str]]:
    """Every cell rendered (sequentially: Jinja and the model are Python) and
    compiled (two clang processes at a time): name -> (dir, object, error)."""
    out_dir = tmp_path_factory.mktemp("bounds_obj")
    dirs = {cell.name: write_sampler(tree, cell.answers()) for cell in CELLS}

    def compile_one(name: str) -> tuple[str, Path | None, str]:
        obj = out_dir / f"{name}.o"
        try:
            bpf.compile_bpf(dirs[name] / "mod.bpf.c", obj, tree)
        except bpf.BpfError as err:
            return name, None, str(err)
        return name, obj, ""

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(compile_one, dirs))
    return {name: (dirs[name], obj, err) for name, obj, err in results}


def _program_sets(names: list[str], attach: str) -> list[list[str]]:
    """What one load keeps: the tp_btf twins, then the raw_tp twins; else everything."""
    if attach != "tp_btf":
        return [names]
    return [[n for n in names if n.endswith(suffix)] for suffix in ("_btf", "_raw")]


@needs_bpf
@pytest.mark.parametrize("cell", CELLS, ids=[c.name for c in CELLS])
def test_verifier_accepts_every_program(built, cell: Cell) -> None:
    directory, obj, error = built[cell.name]
    assert obj is not None, f"{cell.name} does not compile:\n{error}"
    with bpf.BpfObject.open(obj) as probe:
        names = probe.program_names()
    sets = _program_sets(names, cell.attach)
    assert all(len(s) == 1 for s in sets), f"one program per hook and variant: {names}"
    for keep in sets:
        with bpf.BpfObject.open(obj) as loaded:
            for name in names:
                loaded.set_autoload(name, name in keep)
            try:
                loaded.load()
            except bpf.BpfError as err:
                families = "\n".join(
                    [f"  f{i}: {f.describe()}" for i, f in enumerate(cell.families)]
                    + [f"  h{i}: {f.describe()}" for i, f in enumerate(cell.histograms)])
                pytest.fail(f"verifier refused {keep} of {directory}\nfamilies:\n{families}\n"
                            f"{str(err)[-4000:]}")
            for name in keep:
                assert loaded.prog_info(name).verified_insns > 0, name


# --------------------------------------------------------------------------
# counts land where the rule says
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Lbl:
    """One label of a counted family: fixed at `fixed`, or computed by `expr`,
    whose C value for an event value x is `value(x)` (a Python int; the
    generated code holds it in a u64, so a negative value wraps)."""

    values: tuple[str, ...]
    overflow: str | None = None
    expr: str | None = None
    value: object = None  # Callable[[int], int]
    fixed: str | None = None

    def answer(self) -> object:
        values = list(self.values)
        if all(v.isdigit() for v in values) and values == [str(i) for i in range(len(values))]:
            values = len(values)
        return {"values": values, "overflow": self.overflow} if self.overflow else values

    def slot(self, x: int) -> str | None:
        """The value this event counts under, or None when it is dropped."""
        if self.fixed is not None:
            return self.fixed
        index = self.value(x) & MASK64  # u64 local: a negative value is above every bound
        if index < len(self.values):
            return self.values[index]
        return self.overflow


@dataclasses.dataclass(frozen=True)
class Counted:
    name: str
    labels: dict[str, Lbl]
    map: str = "counters"

    def answer(self, metric: str, at: str, when: str, rewrite) -> dict:
        fixed = {k: lb.fixed for k, lb in self.labels.items() if lb.fixed is not None}
        index = {k: rewrite(lb.expr) for k, lb in self.labels.items() if lb.expr is not None}
        increment = {"at": at, "when": rewrite(when)}
        if fixed:
            increment["labels"] = fixed
        if index:
            increment["index"] = index
        return {"name": metric, "description": f"Counted family {self.name}", "map": self.map,
                "labels": {k: lb.answer() for k, lb in self.labels.items()},
                "increments": [increment]}

    def record(self, metric: str, at: str, when: str, rewrite, value: str) -> dict:
        """The same labels as a histogram family recording `value`."""
        answer = self.answer(metric, at, when, rewrite)
        del answer["map"]
        answer["records"] = [answer.pop("increments")[0] | {"value": rewrite(value)}]
        return answer

    def expected(self, metric: str, events: dict[int, int]) -> dict[str, int]:
        """metric{labels} -> delta for every label combination."""
        keys = [dict(zip(self.labels, combo))
                for combo in itertools.product(*(lb.values for lb in self.labels.values()))]
        out = {_key(metric, k): 0 for k in keys}
        for x, n in events.items():
            chosen = {k: lb.slot(x) for k, lb in self.labels.items()}
            if None not in chosen.values():
                out[_key(metric, chosen)] += n
        return out


def _key(metric: str, labels: dict[str, str]) -> str:
    return f"{metric}{{{', '.join(f'{k}={v}' for k, v in labels.items())}}}"


def _names(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(n))


def _counts(n: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(n))


def _wrap(bits: int, signed: bool):
    """A C cast of an integer to `bits` bits, as a Python function."""
    def cast(x: int) -> int:
        x &= (1 << bits) - 1
        return x - (1 << bits) if signed and x >= 1 << (bits - 1) else x
    return cast


def _over(x: int) -> int:
    return x - 1000


# raw_syscalls:sys_enter with invalid syscall numbers 999..1300: nobody else makes
# them, and the tracepoint fires before the kernel refuses them (ENOSYS). The
# event value is the syscall number; `id - 1000` spans -1 .. 300.
SYSCALL_EVENTS = {999: 3, 1000: 5, 1001: 2, 1006: 7, 1007: 4, 1008: 6, 1009: 1, 1015: 2,
                  1031: 3, 1032: 2, 1033: 4, 1063: 2, 1064: 3, 1254: 1, 1255: 2, 1256: 3,
                  1261: 2, 1300: 4}
X = "id - 1000"
SYSCALL_FAMILIES = (
    Counted("drop8", {"v": Lbl(_counts(8), expr=X, value=_over)}),
    Counted("over8", {"v": Lbl(_names("a", 8), "a7", X, _over)}),
    Counted("over9mid", {"v": Lbl(_counts(9), "4", X, _over)}),
    Counted("drop33", {"v": Lbl(_names("a", 33), expr=X, value=_over)}, "m33"),
    Counted("over256", {"v": Lbl(_counts(256), "0", X, _over)}, "m256"),
    Counted("drop1", {"v": Lbl(_counts(1), expr=X, value=_over)}),
    Counted("u8cast", {"v": Lbl(_counts(256), None, f"(u8)({X})",
                                lambda x: _wrap(8, False)(_over(x)))}, "mu8"),
    Counted("u16cast", {"v": Lbl(_counts(64), "63", f"(u16)({X})",
                                 lambda x: _wrap(16, False)(_over(x)))}, "mu16"),
    Counted("s32cast", {"v": Lbl(_counts(32), None, f"(s32)({X})",
                                 lambda x: _wrap(32, True)(_over(x)))}),
    Counted("u32cast", {"v": Lbl(_counts(255), "254", f"(u32)({X})",
                                 lambda x: _wrap(32, False)(_over(x)))}, "mu32"),
    Counted("two", {"hi": Lbl(_names("h", 4), "h3", f"({X}) >> 3", lambda x: _over(x) >> 3),
                    "lo": Lbl(_counts(8), None, f"({X}) & 15", lambda x: _over(x) & 15)}, "mtwo"),
    Counted("fixmix", {"k": Lbl(("a", "b", "c"), fixed="b"),
                       "v": Lbl(_counts(7), "6", X, _over)}),
    Counted("const", {"v": Lbl(_counts(4), "3", "9", lambda x: 9)}),
    Counted("fixed", {"v": Lbl(_names("a", 256), fixed="a255")}, "mfix"),
)

# histograms choose their map by the same rule; each records the syscall number
SYSCALL_HISTOGRAMS = (
    Counted("hover", {"v": Lbl(_counts(4), "3", X, _over)}),
    Counted("hdrop", {"v": Lbl(_names("a", 9), None, f"(u8)({X})",
                               lambda x: _wrap(8, False)(_over(x)))}),
    Counted("hconst", {"v": Lbl(_counts(3), "2", "7", lambda x: 7)}),  # every event: v=2
)

# raw_syscalls:sys_enter (classic) of syscall 1000 with a chosen first argument:
# u64 values far beyond any bound must never wrap into a slot.
ARG_EVENTS = {0: 2, 1: 3, 7: 4, 8: 5, 9: 1, 255: 2, 256: 3, (1 << 32) + 3: 4,
              (1 << 63) + 1: 2, MASK64: 3}
A = "args->args[0]"
ARG_FAMILIES = (
    Counted("drop8", {"v": Lbl(_counts(8), expr=A, value=lambda x: x)}),
    Counted("over9", {"v": Lbl(_names("a", 9), "a8", A, lambda x: x)}),
    Counted("over256", {"v": Lbl(_counts(256), "255", A, lambda x: x)}, "m256"),
    Counted("two", {"hi": Lbl(_counts(4), "3", f"{A} >> 32", lambda x: x >> 32),
                    "lo": Lbl(_counts(16), None, f"{A} & 0xffff", lambda x: x & 0xFFFF)}, "mtwo"),
)

# signal:signal_generate for real-time signals (34 + k) and SIGUSR1/2 sent to a
# child that ignores them, filtered to that child: `sig - 34` is negative for
# the classic signals.
SIGNAL_EVENTS = {34: 2, 35: 3, 41: 1, 42: 4, 64: 2, int(signal.SIGUSR1): 3,
                 int(signal.SIGUSR2): 1}
S = "sig - 34"
SIGNAL_FAMILIES = (
    Counted("drop8", {"v": Lbl(_counts(8), expr=S, value=lambda x: x - 34)}),
    Counted("over31", {"v": Lbl(_counts(31), "15", S, lambda x: x - 34)}),
    Counted("drop32", {"v": Lbl(_names("s", 32), expr=S, value=lambda x: x - 34)}),
    Counted("over1", {"v": Lbl(_counts(1), "0", S, lambda x: x - 34)}),
)


def _counted_answers(name: str, attach: str, tracepoint: str, when: str,
                     families: tuple[Counted, ...], rewrite=lambda e: e,
                     histograms: tuple[Counted, ...] = (), value: str = "") -> dict:
    at = tracepoint.split("(")[0]
    return {
        "group": GROUP, "sampler": name, "attach": attach, "layout": "totals",
        "description": f"Counts routed by the index rule ({attach})",
        "tracepoints": [tracepoint if attach != "tracepoint" else at],
        "counters": [f.answer(f"{GROUP}_{name}_{f.name}", at, when, rewrite) for f in families],
        "histograms": [h.record(f"{GROUP}_{name}_{h.name}", at, when, rewrite, value)
                       for h in histograms],
    }


def _check_histograms(report: dict, name: str, families: tuple[Counted, ...],
                      events: dict[int, int]) -> None:
    """Each label value's map holds exactly the events routed to it, each in the
    bucket of its recorded value (the event value itself)."""
    got = {h["key"]: {int(i): n for i, n in h["bucket_deltas"].items()}
           for h in report["histograms"]}
    problems = []
    for family in families:
        metric = f"{GROUP}_{name}_{family.name}"
        want: dict[str, dict[int, int]] = {}
        for x, n in events.items():
            single = family.expected(metric, {x: n})
            for key, count in single.items():
                if count:
                    bucket = REZOLUS.value_to_index(x)
                    want.setdefault(key, {})[bucket] = want.get(key, {}).get(bucket, 0) + count
        for key in family.expected(metric, {}):
            if got.get(key) != want.get(key, {}):
                problems.append(f"{key}: buckets {got.get(key)} (expected {want.get(key, {})})")
    assert not problems, "histograms off the documented rule:\n" + "\n".join(problems)


def _check_counts(report: dict, name: str, families: tuple[Counted, ...],
                  events: dict[int, int]) -> None:
    got = {c["key"]: c["delta"] for c in report["counters"]}
    problems = []
    for family in families:
        metric = f"{GROUP}_{name}_{family.name}"
        for key, want in family.expected(metric, events).items():
            if got.get(key) != want:
                problems.append(f"{key}: {got.get(key)} (expected {want})")
    assert not problems, "counts off the documented rule:\n" + "\n".join(problems)


def _prove(directory: Path, command: str, force_raw: bool = False) -> dict:
    try:
        report = prove_mod.prove(directory, command=command, force_raw=force_raw)
    except prove_mod.CannotProve as err:
        pytest.skip(str(err))
    assert report["errors"] == [], report["errors"]
    return report


def _syscalls_command(events: dict[int, int], arg: bool) -> str:
    """A Python one-liner making each event's syscall (or syscall 1000 with that
    first argument) as many times as it says."""
    calls = ", ".join(f"({k}, {n})" for k, n in events.items())
    if arg:
        call = "libc.syscall(ctypes.c_long(1000), ctypes.c_ulong(x))"
    else:
        call = "libc.syscall(ctypes.c_long(x))"
    return (f"{sys.executable} -c 'import ctypes; libc = ctypes.CDLL(None); "
            f"libc.syscall.restype = ctypes.c_long; "
            f"[{call} for x, n in [{calls}] for _ in range(n)]'")


@needs_bpf
@pytest.mark.parametrize("variant", ["tp_btf", "raw_tp twin", "tracepoint"])
def test_syscall_number_index_lands_per_rule(tree: Path, variant: str) -> None:
    attach = "tracepoint" if variant == "tracepoint" else "tp_btf"
    name = {"tp_btf": "cnt_sys", "tracepoint": "cnt_sys_cls"}[attach]
    answers = _counted_answers(
        name, attach, "raw_syscalls:sys_enter(regs, id)", "id >= 999 && id <= 1400",
        SYSCALL_FAMILIES, (lambda e: e.replace("id", "args->id")) if attach == "tracepoint"
        else (lambda e: e), SYSCALL_HISTOGRAMS, "id")
    directory = write_sampler(tree, answers)
    report = _prove(directory, _syscalls_command(SYSCALL_EVENTS, arg=False),
                    force_raw=variant == "raw_tp twin")
    assert report["twins"] == {"tp_btf": "tp_btf", "raw_tp twin": "raw_tp",
                               "tracepoint": None}[variant]
    _check_counts(report, name, SYSCALL_FAMILIES, SYSCALL_EVENTS)
    _check_histograms(report, name, SYSCALL_HISTOGRAMS, SYSCALL_EVENTS)


@needs_bpf
def test_u64_argument_index_lands_per_rule(tree: Path) -> None:
    name = "cnt_arg"
    answers = _counted_answers(name, "tracepoint", "raw_syscalls:sys_enter", "args->id == 1000",
                               ARG_FAMILIES)
    directory = write_sampler(tree, answers)
    report = _prove(directory, _syscalls_command(ARG_EVENTS, arg=True))
    _check_counts(report, name, ARG_FAMILIES, ARG_EVENTS)


@pytest.fixture
def ignoring_child():
    """A child that ignores every signal the test sends, until its stdin closes."""
    sigs = sorted(SIGNAL_EVENTS)
    code = (f"import signal, sys\nfor s in {sigs}: signal.signal(s, signal.SIG_IGN)\n"
            f"print('ready', flush=True)\nsys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    yield child.pid
    child.stdin.close()
    child.wait(timeout=10)


@needs_bpf
@pytest.mark.parametrize("variant", ["tp_btf", "raw_tp twin", "tracepoint"])
def test_signal_number_index_lands_per_rule(tree: Path, ignoring_child: int,
                                            variant: str) -> None:
    attach = "tracepoint" if variant == "tracepoint" else "tp_btf"
    name = f"cnt_sig_{ATTACH_SHORT[attach]}"
    if attach == "tracepoint":  # the record's pid is the target task's
        when, rewrite = f"args->pid == {ignoring_child}", lambda e: e.replace("sig", "args->sig")
    else:
        when, rewrite = f"task->tgid == {ignoring_child}", lambda e: e
    answers = _counted_answers(name, attach,
                               "signal:signal_generate(sig, info, task, group, result)", when,
                               SIGNAL_FAMILIES, rewrite)
    directory = write_sampler(tree, answers)
    sends = ", ".join(f"({s}, {n})" for s, n in SIGNAL_EVENTS.items())
    command = (f"{sys.executable} -c 'import os; [os.kill({ignoring_child}, s) "
               f"for s, n in [{sends}] for _ in range(n)]'")
    report = _prove(directory, command, force_raw=variant == "raw_tp twin")
    _check_counts(report, name, SIGNAL_FAMILIES, SIGNAL_EVENTS)


def test_expected_counts_follow_the_rule() -> None:
    """The test's own model of the rule, on hand-checked values."""
    over8, drop8 = SYSCALL_FAMILIES[1], SYSCALL_FAMILIES[0]
    assert over8.labels["v"].slot(999) == "a7"  # -1 wraps above the bound: overflow
    assert drop8.labels["v"].slot(999) is None  # ... or dropped
    assert drop8.labels["v"].slot(1007) == "7" and drop8.labels["v"].slot(1008) is None
    u8 = SYSCALL_FAMILIES[6].labels["v"]
    assert u8.slot(999) == "255" and u8.slot(1261) == "5"  # the cast wraps first
    s32 = SYSCALL_FAMILIES[8].labels["v"]
    assert s32.slot(999) is None  # (s32)-1 is still negative
    two = SYSCALL_FAMILIES[10]
    want = two.expected("m", {1009: 1, 1300: 1, 1015: 1})
    # 1009: hi 1, lo 9 (dropped); 1300: hi 37 -> h3, lo 300 & 15 = 12 (dropped);
    # 1015: hi 1, lo 15 (dropped)
    assert sum(want.values()) == 0
    assert two.expected("m", {1006: 2})["m{hi=h0, lo=6}"] == 2
    assert ARG_FAMILIES[2].labels["v"].slot(MASK64) == "255"
    assert ARG_FAMILIES[0].labels["v"].slot((1 << 32) + 3) is None


# --------------------------------------------------------------------------
# regression: a histogram record whose indexes are all constants
# --------------------------------------------------------------------------


def constant_index_histogram() -> dict:
    """A histogram whose only label takes a constant index beyond its values (the
    model sends it to the overflow value at render time), at a hook where nothing
    else picks a map at run time."""
    return {
        "group": GROUP, "sampler": "const_hist", "attach": "tp_btf", "layout": "totals",
        "description": "A histogram label given as a constant index",
        "tracepoints": ["sched:sched_process_fork(parent, child)"],
        "counters": [],
        "histograms": [{
            "name": f"{GROUP}_const_hist_pid", "description": "Child pids by a constant lane",
            "labels": {"lane": {"values": 3, "overflow": "2"}},
            "records": [{"at": "sched:sched_process_fork", "index": {"lane": "7"},
                         "value": "child->pid"}],
        }],
    }


def test_constant_index_histogram_declares_no_unused_local(tree: Path) -> None:
    """Found by this matrix: such a record declared `u64 combo;` (the local that
    picks a map at run time) without using it, and Rezolus' build (-Wall -Werror)
    refused the file with -Wunused-variable. The constant now chooses the map at
    render time, as a fixed label does, and no `combo` is declared."""
    text = render_files(constant_index_histogram(), tree)["mod.bpf.c"]
    assert "combo" not in text
    assert "histogram_add(&pid_2, " in text  # lane 7 is beyond 0..2: the overflow value's map
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed")
    directory = write_sampler(tree, constant_index_histogram())
    for arch in ARCHES:
        out = directory / f"{arch}.o"
        proc = subprocess.run(clang_command(tree, directory / "mod.bpf.c", out, arch),
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
    if _BPF_OK:
        with bpf.BpfObject.open(directory / "x86_64.o") as obj:
            names = obj.program_names()
        for keep in _program_sets(names, "tp_btf"):
            with bpf.BpfObject.open(directory / "x86_64.o") as obj:
                for name in names:
                    obj.set_autoload(name, name in keep)
                obj.load()


# --------------------------------------------------------------------------
# regression: at most 64 maps per program
# --------------------------------------------------------------------------


def many_maps(histograms: int, counter_maps: int) -> dict:
    """`histograms` families of 16 label combinations (16 maps each) and
    `counter_maps` counter families in maps of their own, all at one hook."""
    at = "raw_syscalls:sys_enter"
    return {
        "group": GROUP, "sampler": f"maps_{histograms}_{counter_maps}", "attach": "tp_btf",
        "layout": "totals", "description": "Maps referenced by one program",
        "tracepoints": [f"{at}(regs, id)"],
        "counters": [{"name": f"{GROUP}_maps_c{i}", "description": f"Counter {i}",
                      "map": f"m{i}", "increments": [at]} for i in range(counter_maps)],
        "histograms": [{"name": f"{GROUP}_maps_h{i}", "description": f"Histogram {i}",
                        "labels": {"lane": 16},
                        "records": [{"at": at, "index": {"lane": "id & 15"}, "value": "id"}]}
                       for i in range(histograms)],
    }


def test_program_maps_counts_what_a_program_references(tree: Path) -> None:
    from support import REPO, load_answers

    from rezolus_sampler.emit.program import program_maps
    from rezolus_sampler.spec import model

    wait = model.build(load_answers(REPO / "examples" / "scheduler_runqueue_wait.yml"), tree)
    by_hook = {h.event: program_maps(wait, h) for h in wait.hooks}
    assert by_hook == {"sched_wakeup": ["runqueue_start"], "sched_wakeup_new": ["runqueue_start"],
                       "sched_switch": ["runqueue_start", "runqueue"]}
    sizes = model.build(load_answers(REPO / "examples" / "blockio_request_sizes.yml"), tree)
    assert len(program_maps(sizes, sizes.hooks[0])) == 4
    wide = model.build(many_maps(4, 0), tree)
    assert len(program_maps(wide, wide.hooks[0])) == 64


def test_more_maps_than_the_kernel_allows_are_refused(tree: Path) -> None:
    """Found by the full matrix: the model accepted a hook whose program references
    more than 64 maps (each histogram label combination is one), the kernel's
    limit per program, and the rendered sampler then failed to load ("The total
    number of maps per program has reached the limit of 64"). Now refused at the
    prompt, at exactly the kernel's limit: 64 maps load, 65 are refused."""
    from rezolus_sampler.spec import model

    for spec in (many_maps(4, 1), many_maps(3, 17)):
        with pytest.raises(model.SpecError, match=r"raw_syscalls:sys_enter would use 65 maps.*"
                                                  r"at most 64"):
            model.build(spec, tree)
    for spec in (many_maps(4, 0), many_maps(3, 16)):
        model.build(spec, tree)  # 64 maps: accepted
        if not _BPF_OK:
            continue
        directory = write_sampler(tree, spec)
        obj = directory / "x86_64.o"
        bpf.compile_bpf(directory / "mod.bpf.c", obj, tree)
        with bpf.BpfObject.open(obj) as probe:
            names = probe.program_names()
        for keep in _program_sets(names, "tp_btf"):
            with bpf.BpfObject.open(obj) as loaded:
                for name in names:
                    loaded.set_autoload(name, name in keep)
                loaded.load()  # the verifier takes 64 maps
