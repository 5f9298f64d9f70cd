"""The slot layout: maps, banks, widths, static names, acquisition groups.

Computed once from the checked spec and printed by every template, so the
BPF slot table, the Rust vectors and `#[metric]` statics, and the doc stub
can never disagree:
- counters: one mmapable ARRAY per map of MAX_CPUS banks of W u64, W =
  roundup(n, 8) where n is exactly the length of the Rust vector;
- histograms: one mmapable ARRAY of HISTOGRAM_BUCKETS u64 per label
  combination of a family, one acquisition group per family (P9, P12);
- latencies between hooks: one MAX_PID array of start times per family,
  used only inside the kernel (never a hash map, P2).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass, field

from rezolus_sampler.spec.model import (
    HISTOGRAM_BUCKETS,
    MAX_BANK_SLOTS,
    MAX_CPUS,
    MAX_PID,
    MAX_STATIC_LEN,
    SLOTS_PER_CACHELINE,
    Family,
    Label,
    Sampler,
    Slot,
    SpecError,
)

# Items the generated Rust defines or names in the scope of the statics
# (mod.rs imports stats::*, crate::agent::* and bpf::*): a static of the same
# name would shadow or clash with them.
RUST_FIXED = {
    "NAME": "mod.rs (the sampler name)",
    "SAMPLER_ENTRY": "mod.rs (the sampler registration)",
    "SAMPLERS": "crate::agent::samplers (the registry mod.rs names)",
    "ACQUISITION_GROUPS": "crate::agent::samplers (the group registry)",
    "MAX_CPUS": "crate::agent (per-CPU statics import it)",
    "HISTOGRAM_GROUPING_POWER": "crate::common (histogram statics import it)",
    "BPF_RUN_COUNT": "stats.rs (BPF run count)",
    "BPF_RUN_TIME": "stats.rs (BPF run time)",
}


# Names init() in mod.rs uses as values: a vector local must not shadow them.
RUST_INIT_NAMES = frozenset({"config", "bpf", "kernel_has_btf", "init"})


@dataclass
class CounterMap:
    """One per-CPU-banked counters map: its slots are its families' slots in order."""

    name: str
    families: list[Family] = field(default_factory=list)
    acq_group: str = ""
    vector: str = ""  # the Rust local holding its statics in mod.rs
    slot_add: str | None = None  # the bounds-checked add for computed slots, when one is used

    @property
    def slots(self) -> list[Slot]:
        return [slot for f in self.families for slot in f.slots]

    @property
    def n(self) -> int:
        return len(self.slots)

    @property
    def width(self) -> int:
        return -(-self.n // SLOTS_PER_CACHELINE) * SLOTS_PER_CACHELINE

    @property
    def width_macro(self) -> str:
        return f"{self.name.upper()}_WIDTH"

    @property
    def bytes(self) -> int:
        return MAX_CPUS * self.width * 8

    @property
    def acq_static(self) -> str:
        return f"{self.name.upper()}_ACQ"

    @property
    def bank_struct(self) -> str:
        return f"{self.name}_bank"

    @property
    def counters(self) -> list[Family]:
        return self.families

    @property
    def vector_items(self) -> list[tuple[str, str | None]]:
        """`&STATIC` per slot, the first of each family noting the family and its slots."""
        items = []
        for f in self.families:
            last = f.base + f.cardinality - 1
            where = f"slot {f.base}" if last == f.base else f"slots {f.base}..{last}"
            for i, slot in enumerate(f.slots):
                items.append((f"&{slot.static}", f"{f.name}: {where}" if i == 0 else None))
        return items


@dataclass
class HistogramMap:
    """One label combination of a histogram family: an ARRAY of its buckets."""

    name: str
    family: Family
    slot: Slot

    @property
    def bytes(self) -> int:
        return HISTOGRAM_BUCKETS * 8


@dataclass
class HistogramGroup:
    family: Family
    maps: list[HistogramMap]
    acq_group: str
    short: str

    @property
    def acq_static(self) -> str:
        return f"{self.short.upper()}_ACQ"

    @property
    def bytes(self) -> int:
        return sum(m.bytes for m in self.maps)


@dataclass
class StampMap:
    """Start times of one latency family, indexed by key (< MAX_PID)."""

    name: str
    family: Family

    @property
    def bytes(self) -> int:
        return MAX_PID * 8


def family_macro(family: Family) -> str:
    """The C macro of a counter family's first slot (namespaced by the `_BASE` suffix)."""
    return f"{family.const}_BASE"


def static_suffix(label: Label, value: str) -> str:
    token = re.sub(r"[^A-Za-z0-9]", "_", value).upper()
    return f"{label.name.upper()}_{token}" if label.numeric else token


def _slots(family: Family, base: int) -> list[Slot]:
    out = []
    combos = itertools.product(*(label.values for label in family.labels))
    for offset, combo in enumerate(combos):
        pairs = tuple(zip((label.name for label in family.labels), combo))
        suffix = "_".join(static_suffix(label, value) for label, value in zip(family.labels, combo))
        static = family.const + (f"_{suffix}" if suffix else "")
        out.append(Slot(base + offset, static, family.name, pairs))
    return out


def _short(sampler: Sampler, family: Family) -> str:
    prefix = f"{sampler.name}_"
    short = family.name[len(prefix) :] if family.name.startswith(prefix) else family.name
    return short or family.name


def lay_out(sampler: Sampler, reserved_c: dict[str, str], reserved_rust: dict[str, str] | None = None) -> None:
    """Fill in the sampler's maps, slots, statics and groups; SpecError on a clash."""
    maps: dict[str, CounterMap] = {}
    for family in sampler.counters:
        m = maps.setdefault(family.map, CounterMap(family.map))
        family.base = m.n
        family.slots = _slots(family, family.base)
        m.families.append(family)
    for m in maps.values():
        if m.n > MAX_BANK_SLOTS:
            raise SpecError(
                f"map {m.name} holds {m.n} slots; the limit is {MAX_BANK_SLOTS} per bank "
                f"({MAX_CPUS} CPUs x {MAX_BANK_SLOTS} x 8 B = "
                f"{MAX_CPUS * MAX_BANK_SLOTS * 8 // 2**20} MiB). Put families in separate maps "
                f"(map: <name>) or coarsen labels",
                f"{m.families[0].name}.map",
            )
        m.acq_group = f"{sampler.name}_{m.name}"
        # the vector's local in init() must not shadow what init() uses
        m.vector = m.name if m.name not in RUST_INIT_NAMES else f"{m.name}_counters"
        if m.name == sampler.name:
            raise SpecError(f"map name {m.name!r} would repeat the sampler name; choose another", "map")
    sampler.maps = list(maps.values())

    # histogram and start-time maps are named after the family without the
    # sampler's prefix (`bytes_read`, `runqueue_start`), as hand-written samplers
    # name theirs, unless that short name is taken: then the full family name.
    taken = set(maps) | {m.width_macro for m in maps.values()}
    taken |= {family_macro(f) for f in sampler.counters} | set(reserved_c)
    groups = []
    for family in sampler.histograms:
        family.slots = _slots(family, 0)
        short = _short(sampler, family)
        names = []
        for base in (short, family.name):
            names = [
                "_".join([base] + [re.sub(r"[^a-z0-9]", "_", v.lower()) for _, v in slot.labels])
                for slot in family.slots
            ]
            if not taken & set(names):
                break
        taken |= set(names)
        hmaps = [HistogramMap(n, family, slot) for n, slot in zip(names, family.slots)]
        groups.append(HistogramGroup(family, hmaps, f"{sampler.name}_{short}", short))
    sampler.histogram_maps = groups
    sampler.stamp_maps = []
    for family in sampler.histograms:
        for update in family.updates:
            if update.latency is not None:
                stamp = next((s for s in sampler.stamp_maps if s.family is family), None)
                if stamp is None:
                    short = _short(sampler, family)
                    name = f"{short}_start" if f"{short}_start" not in taken else f"{family.name}_start"
                    taken.add(name)
                    stamp = StampMap(name, family)
                    sampler.stamp_maps.append(stamp)
                object.__setattr__(update.latency, "stamp_map", stamp.name)
    _check_names(sampler, reserved_c, reserved_rust or {})


def _check_names(sampler: Sampler, reserved_c: dict[str, str], reserved_rust: dict[str, str]) -> None:
    """Every identifier a user name becomes is unique and shadows nothing."""
    c_names: dict[str, str] = {"MAX_CPUS": "the bank macro", "MAX_PID": "the start-time macro"}

    def claim_c(name: str, what: str, field_name: str) -> None:
        where = c_names.get(name) or reserved_c.get(name)
        if where:
            raise SpecError(
                f"{what} becomes the C identifier {name}, which {where} already defines; "
                f"choose another name",
                field_name,
            )
        c_names[name] = what

    for m in sampler.maps:
        claim_c(m.name, f"map {m.name}", f"{m.families[0].name}.map")
        claim_c(m.width_macro, f"the width macro of map {m.name}", f"{m.families[0].name}.map")
        claim_c(f"{m.name}_slot_add", f"the slot helper of map {m.name}", f"{m.families[0].name}.map")
        for f in m.families:
            claim_c(family_macro(f), f"the slot macro of {f.name}", f"{f.name}.name")
    for g in sampler.histogram_maps:
        for hm in g.maps:
            claim_c(hm.name, f"the histogram map of {hm.slot.label_text}", f"{g.family.name}.name")
    for s in sampler.stamp_maps:
        claim_c(s.name, f"the start-time map of {s.family.name}", f"{s.family.name}.name")
    for hook in sampler.hooks:
        # a program is named after its event (Rezolus' convention) unless that name is
        # taken (the event bpf_trace_printk vs libbpf's helper): then `<name>_prog`
        renamed = []
        for p in hook.programs:
            name = p.name
            while name in c_names or name in reserved_c:
                name = f"{name}_prog"
            renamed.append(dataclasses.replace(p, name=name))
            claim_c(name, f"the program of {hook.tracepoint}", "tracepoints")
        hook.programs = tuple(renamed)
        if sampler.twins:
            claim_c(f"handle_{hook.event}", f"the handler of {hook.tracepoint}", "tracepoints")
    for hook in sampler.hooks:
        for arg in hook.args:
            if arg.name in c_names:
                raise SpecError(
                    f"argument {arg.name} of {hook.tracepoint} has the name of {c_names[arg.name]}; "
                    f"name the argument differently",
                    "tracepoints",
                )

    rust: dict[str, str] = dict(RUST_FIXED)
    rust.update(reserved_rust)

    def claim_rust(name: str, what: str, field_name: str) -> None:
        if len(name) > MAX_STATIC_LEN:
            raise SpecError(
                f"static name {name} is {len(name)} characters (metric name plus label values); "
                f"the limit is {MAX_STATIC_LEN}: shorten the metric name or label values",
                field_name,
            )
        where = rust.get(name)
        if where:
            raise SpecError(
                f"{what} gets the Rust static name {name}, which {where} already uses; rename "
                f"the family or a label value",
                field_name,
            )
        rust[name] = what

    for m in sampler.maps:
        claim_rust(m.acq_static, f"map {m.name}'s acquisition group", f"{m.families[0].name}.map")
        claim_rust(f"{m.acq_static}_REG", f"map {m.name}'s group registration", f"{m.families[0].name}.map")
    for g in sampler.histogram_maps:
        claim_rust(g.acq_static, f"{g.family.name}'s acquisition group", f"{g.family.name}.name")
        claim_rust(f"{g.acq_static}_REG", f"{g.family.name}'s group registration", f"{g.family.name}.name")
    for family in sampler.families:
        for slot in family.slots:
            claim_rust(slot.static, slot.label_text, f"{family.name}.labels")
    groups = [m.acq_group for m in sampler.maps] + [g.acq_group for g in sampler.histogram_maps]
    dup = sorted({g for g in groups if groups.count(g) > 1})
    if dup:
        raise SpecError(f"two families share the acquisition group name {dup[0]}; rename one", "histograms")


def summary_lines(sampler) -> list[str]:
    """The layout in words: what `rezolus-sampler new` shows before it writes."""
    attach = {"tp_btf": "tp_btf programs with raw_tp twins", "raw_tp": "raw_tp programs",
              "tracepoint": "classic tracepoint programs"}[sampler.attach]  # fmt: skip
    lines = [
        f"{sampler.name}: {len(sampler.hooks)} tracepoint(s), {len(sampler.programs)} "
        f"program(s) ({attach}), one per hook{' and variant' if sampler.twins else ''}"
    ]
    for m in sampler.maps:
        lines.append(
            f"  map {m.name}: {m.n} slot(s), W = roundup({m.n}, 8) = {m.width}, "
            f"MAX_CPUS x W x 8 B = {m.bytes} B"
        )
        for f in m.families:
            labels = ", ".join(f"{label.name} ({label.cardinality})" for label in f.labels) or "no labels"
            last = f.base + f.cardinality - 1
            where = f"slot {f.base}" if last == f.base else f"slots {f.base}..{last}"
            lines.append(f"    {f.name}: {where}; {labels}")
    for g in sampler.histogram_maps:
        lines.append(
            f"  histogram {g.family.name}: {len(g.maps)} map(s) of {HISTOGRAM_BUCKETS} buckets, "
            f"{g.bytes} B"
        )
    for s in sampler.stamp_maps:
        lines.append(f"  start times {s.name}: MAX_PID x 8 B = {s.bytes} B")
    lines.append(f"  memory: {sampler.memory_bytes} B in total; {len(sampler.slots)} {sampler.static_type} static(s)")
    return lines
