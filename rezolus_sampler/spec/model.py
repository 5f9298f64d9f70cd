"""Answers -> a checked sampler spec.

`build(answers, rezolus_root)` validates the questionnaire's answers and
returns a `Sampler`: its hooks with typed arguments, its counter and
histogram families with labels, and where each family is updated, with
every expression parsed and checked (`expr.py`). The slot layout and each
hook's program are computed from this spec once (`emit/layout.py`,
`emit/program.py`) and printed by the C, Rust and doc templates alike.

Invalid answers raise `SpecError` with one message that names the field,
says what is wrong and what is allowed. Nothing here writes files.
"""

from __future__ import annotations

import functools
import math
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rezolus_sampler.spec import expr as expressions
from rezolus_sampler.spec import vmlinux
from rezolus_sampler.spec.expr import Expr, ExprError, Scope
from rezolus_sampler.spec import running
from rezolus_sampler.spec.hooks import (
    ATTACH_STYLES,
    Hook,
    HookError,
    parse_hook,
    programs_for,
    record_differences,
    suggest,
)
from rezolus_sampler.spec.names import (
    C_IMPLICIT,
    MAX_METRIC_LEN,
    RESERVED_LABELS,
    NameError_,
    check_name,
    check_text,
    rust_module_reserved,
    rust_static_reserved,
)

# Shared with Rezolus: `crate::agent::MAX_CPUS`, `MAX_PID` and the 64-byte cacheline.
MAX_CPUS = 1024
MAX_PID = 4194304
SLOTS_PER_CACHELINE = 8
HISTOGRAM_BUCKETS = 496  # HISTOGRAM_BUCKETS_POW_3: grouping power 3, values up to 2^64
HISTOGRAM_POWER = 3

# Documented limits (README "Limits").
MAX_FAMILY_SLOTS = 256  # label combinations of one counter family
MAX_HISTOGRAM_COMBOS = 16  # label combinations (maps) of one histogram family
MAX_BANK_SLOTS = 512  # slots in one map's per-CPU bank: MAX_CPUS * 512 * 8 B = 4 MiB
MAX_TRACEPOINTS = 64
# The kernel's verifier refuses a program that references more than 64 maps
# (MAX_USED_MAPS, kernel/bpf/verifier.c): "The total number of maps per program
# has reached the limit of 64". Checked per hook by emit/program.py.
MAX_PROGRAM_MAPS = 64
MAX_STATIC_LEN = 64  # keeps every generated declaration within 100 columns
MAX_MAP_NAME_LEN = 12  # keeps each bank lookup on one line
MAX_SAMPLER_NAME_LEN = 48  # <group>_<sampler>: skeleton file, config key, statics

LAYOUTS = ("totals", "per_cpu")
DEFAULT_MAP = "counters"
ANSWER_KEYS = (
    "group", "sampler", "description", "copyright_year", "attach", "tracepoints", "layout",
    "counters", "histograms",
)  # fmt: skip

LABEL_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
UNIT = re.compile(r"^[A-Za-z][A-Za-z/%]*$")


class SpecError(ValueError):
    """An answer that cannot be rendered; the message says how to fix it."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


# --------------------------------------------------------------------------
# the spec


@dataclass(frozen=True)
class Label:
    name: str
    values: tuple[str, ...]
    overflow: str | None  # value that takes out-of-range indexes; None drops them

    @property
    def cardinality(self) -> int:
        return len(self.values)

    @property
    def numeric(self) -> bool:
        return all(v.isdigit() for v in self.values)


@dataclass(frozen=True)
class Slot:
    index: int  # within its map (counters: the bank; histograms: the family's maps)
    static: str  # Rust static name
    metric: str
    labels: tuple[tuple[str, str], ...]

    @property
    def label_text(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.labels)
        return f"{self.metric}{{{inner}}}" if inner else self.metric


@dataclass(frozen=True)
class Latency:
    """A latency between hooks: `start` hooks stamp the time per key, this hook reads it."""

    start: tuple[tuple[str, Expr, Expr | None], ...]  # (start tracepoint, its key, its `when`)
    key: Expr  # the key at the reading hook
    stamp_map: str = ""  # set by the layout


@dataclass
class Update:
    """Where and how a family is updated at one hook."""

    family: "Family"
    hook: Hook
    fixed: dict[str, str]  # label -> value
    index: dict[str, Expr]  # label -> expression yielding the value's index
    when: Expr | None
    by: Expr | None = None  # counters: the amount (None adds 1)
    value: Expr | None = None  # histograms: the value recorded
    latency: Latency | None = None  # histograms: a latency instead of a value


@dataclass
class Family:
    kind: str  # "counter" or "histogram"
    name: str
    description: str
    unit: str | None
    labels: tuple[Label, ...]
    map: str  # counters: the map; histograms: the prefix of its maps
    updates: list[Update] = field(default_factory=list)
    slots: list[Slot] = field(default_factory=list)  # set by the layout
    base: int = 0  # counters: first slot in the map's bank (set by the layout)

    @property
    def const(self) -> str:
        return self.name.upper()

    @property
    def cardinality(self) -> int:
        return math.prod(label.cardinality for label in self.labels)

    def strides(self) -> list[int]:
        """Row-major strides: the last label varies fastest."""
        out, stride = [], 1
        for label in reversed(self.labels):
            out.append(stride)
            stride *= label.cardinality
        return list(reversed(out))


@dataclass
class Sampler:
    group: str
    sampler: str
    description: str
    attach: str
    layout: str
    hooks: list[Hook]
    families: list[Family]
    copyright_year: int | None = None
    # computed by emit.layout.lay_out / emit.program.emit_hooks
    maps: list = field(default_factory=list)
    histogram_maps: list = field(default_factory=list)
    stamp_maps: list = field(default_factory=list)
    programs_by_hook: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.group}_{self.sampler}"

    @property
    def counters(self) -> list[Family]:
        return [f for f in self.families if f.kind == "counter"]

    @property
    def histograms(self) -> list[Family]:
        return [f for f in self.families if f.kind == "histogram"]

    @property
    def programs(self):
        return [p for hook in self.hooks for p in hook.programs]

    def disabled_when(self, variant: str) -> list[str]:
        return [p.name for p in self.programs if p.variant == variant]

    @property
    def twins(self) -> bool:
        return self.attach == "tp_btf"

    @property
    def slots(self) -> list[Slot]:
        return [slot for m in self.maps for slot in m.slots]

    @property
    def metric_names(self) -> list[str]:
        return [f.name for f in self.families]

    @property
    def static_type(self) -> str:
        return "CounterGroup" if self.layout == "per_cpu" else "LazyCounter"

    @property
    def static_init(self) -> str:
        if self.layout == "per_cpu":
            return "CounterGroup::new(MAX_CPUS)"
        return "LazyCounter::new(Counter::default)"

    @property
    def builder_method(self) -> str:
        return "cpu_counters" if self.layout == "per_cpu" else "counters"

    @property
    def computed_labels(self) -> bool:
        """Whether any slot index is computed at run time (and so bounds-checked)."""
        return any(u.index for f in self.families for u in f.updates)

    @property
    def registered_maps(self) -> list[str]:
        """Maps mod.rs hands to the builder (each needs a SkelExt arm)."""
        return [m.name for m in self.maps] + [hm.name for g in self.histogram_maps for hm in g.maps]

    @property
    def memory_bytes(self) -> int:
        return sum(m.bytes for m in self.maps + self.histogram_maps + self.stamp_maps)


# --------------------------------------------------------------------------
# answer checks

_NAME_ERRORS = (NameError_, HookError, ExprError)


def _as_list(value: Any, what: str) -> list:
    if not isinstance(value, list):
        raise SpecError(f"{what} must be a list, not {type(value).__name__}", what)
    return value


def _as_map(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise SpecError(f"{what} must be a mapping (key: value), not {type(value).__name__}", what)
    return value


def _field(what: str):
    """Run a check and turn its error into a SpecError naming the field."""

    class _Ctx:
        def __enter__(self):
            return self

        def __exit__(self, kind, err, tb):
            if err is not None and isinstance(err, _NAME_ERRORS):
                raise SpecError(str(err), what) from None
            return False

    return _Ctx()


def check_identity(answers: dict) -> tuple[str, str, str]:
    with _field("group"):
        group = check_name(answers.get("group"), "group")
    with _field("sampler"):
        sampler = check_name(answers.get("sampler"), "sampler")
    if len(group) + 1 + len(sampler) > MAX_SAMPLER_NAME_LEN:
        raise SpecError(
            f"{group}_{sampler} is {len(group) + 1 + len(sampler)} characters; Rezolus uses it for "
            f"the config key, the skeleton file and every static: keep <group>_<sampler> within "
            f"{MAX_SAMPLER_NAME_LEN}",
            "sampler",
        )
    with _field("description"):
        description = check_text(answers.get("description"), "description")
    return group, sampler, description


def parse_label(name: Any, spec: Any, family: str, limit: int) -> Label:
    where = f"label {name} of {family}"
    with _field(f"{family}.labels"):
        check_name(name, f"label of {family}")
    if name in RESERVED_LABELS:
        raise SpecError(
            f"label {name!r} of {family} is reserved by Rezolus metadata "
            f"({', '.join(sorted(RESERVED_LABELS))}); choose another name",
            f"{family}.labels.{name}",
        )
    overflow = None
    if isinstance(spec, dict):
        unknown = set(spec) - {"values", "overflow"}
        if unknown:
            raise SpecError(f"{where}: unknown keys {sorted(map(str, unknown))} (allowed: values, overflow)", f"{family}.labels.{name}")
        overflow = spec.get("overflow")
        spec = spec.get("values")
    if isinstance(spec, bool):
        spec = None
    if isinstance(spec, int):
        if not 1 <= spec <= limit:
            raise SpecError(f"{where}: cardinality {spec} must be 1..{limit}", f"{family}.labels.{name}")
        values = tuple(str(i) for i in range(spec))
    elif isinstance(spec, list) and spec:
        if len(spec) > limit:
            raise SpecError(f"{where}: {len(spec)} values; the limit is {limit}", f"{family}.labels.{name}")
        values = tuple(str(v) for v in spec)
        for v, raw in zip(values, spec):
            if isinstance(raw, (dict, list)) or not LABEL_VALUE.match(v) or len(v) > 32:
                raise SpecError(
                    f"{where}: value {v[:40]!r} must be up to 32 letters, digits, '_', '.' or '-', "
                    f"starting with a letter or digit",
                    f"{family}.labels.{name}",
                )
        dup = sorted(v for v in set(values) if values.count(v) > 1)
        if dup:
            raise SpecError(f"{where}: duplicate values {dup}", f"{family}.labels.{name}")
    else:
        raise SpecError(
            f"{where} needs explicit values ({name}: [read, write]) or a bare cardinality "
            f"({name}: 8)",
            f"{family}.labels.{name}",
        )
    if overflow is not None:
        overflow = str(overflow)
        if overflow not in values:
            raise SpecError(
                f"{where}: overflow value {overflow!r} must be one of its values {list(values)}",
                f"{family}.labels.{name}",
            )
    return Label(name, values, overflow)


def parse_family(spec: Any, position: int, kind: str) -> tuple[Family, list]:
    plural = "counters" if kind == "counter" else "histograms"
    where = f"{plural}[{position}]"
    spec = _as_map(spec, where)
    allowed = {"name", "description", "unit", "labels", "map", "increments" if kind == "counter" else "records"}
    unknown = set(map(str, spec)) - allowed
    if unknown:
        raise SpecError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})", where)
    with _field(f"{where}.name"):
        name = check_name(spec.get("name"), f"{where} name", MAX_METRIC_LEN)
    with _field(f"{name}.description"):
        description = check_text(spec.get("description"), f"description of {name}")
    unit = spec.get("unit")
    if unit is not None and (not isinstance(unit, str) or not UNIT.match(unit) or len(unit) > 32):
        raise SpecError(f"unit of {name} {unit!r} must be a word such as 'bytes' or 'packets'", f"{name}.unit")
    limit = MAX_FAMILY_SLOTS if kind == "counter" else MAX_HISTOGRAM_COMBOS
    labels_spec = _as_map(spec.get("labels") or {}, f"labels of {name}")
    labels = tuple(parse_label(k, v, name, limit) for k, v in labels_spec.items())
    default_map = DEFAULT_MAP if kind == "counter" else name
    with _field(f"{name}.map"):
        map_name = check_name(spec.get("map", default_map), f"map of {name}")
    if kind == "counter" and len(map_name) > MAX_MAP_NAME_LEN:
        raise SpecError(f"map name {map_name!r} of {name} must be at most {MAX_MAP_NAME_LEN} characters", f"{name}.map")
    if kind == "histogram" and "map" in spec:
        raise SpecError(f"{name}: histograms name their maps after the family and label values; drop 'map'", f"{name}.map")
    family = Family(kind, name, description, unit, labels, map_name)
    if family.cardinality > limit:
        product = " x ".join(str(label.cardinality) for label in labels)
        what = "label combinations" if kind == "counter" else "label combinations (one map each)"
        raise SpecError(
            f"{name} has {product} = {family.cardinality} {what}; the limit is {limit} per "
            f"family (fixed-cardinality arrays, principle P2). Coarsen a label or split the family",
            f"{name}.labels",
        )
    key = "increments" if kind == "counter" else "records"
    updates = spec.get(key)
    if not updates:
        noun = "increment" if kind == "counter" else "record"
        raise SpecError(f"{name} needs at least one {noun}: where (which tracepoint) it {'counts' if kind == 'counter' else 'records'}", f"{name}.{key}")
    return family, _as_list(updates, f"{key} of {name}")


class _Context:
    """What checking an update needs: the hooks, their scopes, the type indexes."""

    def __init__(self, hooks: dict[str, Hook], types: tuple, attach: str):
        self.hooks = hooks
        self.types = types
        self.attach = attach

    def hook(self, at: Any, what: str) -> Hook:
        at = str(at or "").replace(" ", "")
        at = re.sub(r"\(.*\)$", "", at)  # 'cat:event(args)' names the same hook
        at = re.sub(r"@\w+$", "", at)
        if at not in self.hooks:
            raise SpecError(
                f"{what} is at {at!r}, which is not one of this sampler's tracepoints "
                f"({', '.join(self.hooks)})" + suggest(at, list(self.hooks)),
                what,
            )
        return self.hooks[at]

    def scope(self, hook: Hook) -> Scope:
        return Scope(hook.tracepoint, hook.scope_args, hook.classic, self.types, tuple(expressions.BUILTINS))

    def expr(self, value: Any, hook: Hook, role: str, what: str) -> Expr:
        try:
            return expressions.check(value, self.scope(hook), role, what)
        except ExprError as err:
            raise SpecError(str(err), what) from None


def _labels_at(spec: dict, family: Family, hook: Hook, ctx: _Context, where: str):
    fixed_raw = _as_map(spec.get("labels") or {}, f"{where}: labels")
    index_raw = _as_map(spec.get("index") or {}, f"{where}: index")
    fixed = {str(k): v for k, v in fixed_raw.items()}
    declared = {label.name: label for label in family.labels}
    for key in list(fixed) + [str(k) for k in index_raw]:
        if key not in declared:
            raise SpecError(
                f"{where}: {key!r} is not a label of {family.name} (labels: "
                f"{', '.join(declared) or 'none'})" + suggest(key, list(declared)),
                where,
            )
    both = set(fixed) & set(map(str, index_raw))
    if both:
        raise SpecError(f"{where}: label(s) {sorted(both)} are both fixed and computed", where)
    missing = [n for n in declared if n not in fixed and n not in map(str, index_raw)]
    if missing:
        raise SpecError(
            f"{where}: give every label a fixed value (labels:) or an index expression "
            f"(index:); missing {missing}",
            where,
        )
    out_fixed = {}
    for key, value in fixed.items():
        if isinstance(value, (dict, list)) or str(value) not in declared[key].values:
            raise SpecError(f"{where}: {key}={value!r} is not one of {list(declared[key].values)}", where)
        out_fixed[key] = str(value)
    index = {}
    for key, raw in index_raw.items():
        label = declared[str(key)]
        e = ctx.expr(raw, hook, "index", f"{where}: index of {key}")
        if e.const is not None:
            value = e.const
            if not 0 <= value < label.cardinality and label.overflow is None:
                raise SpecError(
                    f"{where}: index of {key} is always {value}, outside 0..{label.cardinality - 1}: "
                    f"nothing would be counted; give the value as a fixed label instead",
                    where,
                )
        index[str(key)] = e
    return out_fixed, index


def parse_update(spec: Any, family: Family, ctx: _Context, position: int) -> Update:
    kind = family.kind
    noun = "increment" if kind == "counter" else "record"
    where = f"{family.name} {noun} #{position + 1}"
    if isinstance(spec, str):
        spec = {"at": spec}
    spec = _as_map(spec, where)
    allowed = {"at", "labels", "index", "when"} | ({"by"} if kind == "counter" else {"value", "latency"})
    unknown = set(map(str, spec)) - allowed
    if unknown:
        raise SpecError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})", where)
    hook = ctx.hook(spec.get("at"), f"{where}")
    where = f"{family.name} at {hook.tracepoint}"
    fixed, index = _labels_at(spec, family, hook, ctx, where)
    when = None
    if spec.get("when") is not None:
        when = ctx.expr(spec["when"], hook, "when", f"{where}: when")
    update = Update(family, hook, fixed, index, when)
    if kind == "counter":
        if spec.get("by") not in (None, 1, "1"):
            update.by = ctx.expr(spec["by"], hook, "by", f"{where}: by")
        return update
    has_value, has_latency = spec.get("value") is not None, spec.get("latency") is not None
    if has_value == has_latency:
        raise SpecError(
            f"{where}: give either 'value' (an expression, e.g. nr_bytes or now - "
            f"rq->io_start_time_ns) or 'latency' (a start hook), not {'both' if has_value else 'neither'}",
            where,
        )
    if has_value:
        update.value = ctx.expr(spec["value"], hook, "value", f"{where}: value")
    else:
        update.latency = parse_latency(spec["latency"], hook, ctx, where)
    return update


def parse_latency(spec: Any, hook: Hook, ctx: _Context, where: str) -> Latency:
    """`latency: {start: <hook or [{at, key, when}]>, key: <expr>}` (keys default to the thread)."""
    if isinstance(spec, str):
        spec = {"start": spec}
    spec = _as_map(spec, f"{where}: latency")
    unknown = set(map(str, spec)) - {"start", "key"}
    if unknown:
        raise SpecError(f"{where}: latency has unknown keys {sorted(unknown)} (allowed: start, key)", where)
    starts_raw = spec.get("start")
    if starts_raw is None:
        raise SpecError(f"{where}: latency needs 'start': the tracepoint that stamps the start time", where)
    if not isinstance(starts_raw, list):
        starts_raw = [starts_raw]
    starts = []
    for item in starts_raw:
        if isinstance(item, str):
            item = {"at": item}
        item = _as_map(item, f"{where}: latency start")
        extra = set(map(str, item)) - {"at", "key", "when"}
        if extra:
            raise SpecError(
                f"{where}: latency start has unknown keys {sorted(extra)} (allowed: at, key, when)", where
            )
        start_hook = ctx.hook(item.get("at"), f"{where}: latency start")
        label = f"{where}: latency start at {start_hook.tracepoint}"
        key = ctx.expr(item.get("key", "current_thread"), start_hook, "key", f"{label}: key")
        when = None
        if item.get("when") is not None:
            when = ctx.expr(item["when"], start_hook, "when", f"{label}: when")
        starts.append((start_hook.tracepoint, key, when))
    if len({t for t, _, _ in starts}) != len(starts):
        raise SpecError(f"{where}: a start tracepoint is listed twice", where)
    key = ctx.expr(spec.get("key", "current_thread"), hook, "key", f"{where}: latency key")
    return Latency(tuple(starts), key)


def expressions_of(sampler: "Sampler"):
    """(hook, Expr) for every expression of the sampler."""
    hooks = {h.tracepoint: h for h in sampler.hooks}
    for family in sampler.families:
        for u in family.updates:
            for e in [*u.index.values(), u.when, u.by, u.value]:
                if e is not None:
                    yield u.hook, e
            if u.latency is not None:
                yield u.hook, u.latency.key
                for tracepoint, key, when in u.latency.start:
                    yield hooks[tracepoint], key
                    if when is not None:
                        yield hooks[tracepoint], when


def _chain_steps(node) -> tuple[str, list]:
    """The root record and (member, subscript, kind, bits) steps of a member chain."""
    root, accesses = expressions._chain(node)
    steps = []
    for access in accesses:
        if isinstance(access, expressions.Subscript):
            name, kind, bits = steps.pop()[0], "array", None
            steps.append((name, access.index, kind, bits))
        else:
            kind = "record" if access.type.is_record else access.type.kind
            steps.append((access.name, None, kind, access.bits))
    first = accesses[0]
    base = root.type.target if first.arrow else root.type
    return base.code, steps


def kernel_warnings(sampler: "Sampler") -> list[str]:
    """What the running kernel's BTF lacks of what the expressions read (not refused:
    the build host need not run the fleet's kernel; the program would not load here)."""
    if not running.readable():
        return []
    problems: set[str] = set()
    classic: dict[str, set[str]] = {}
    for hook, e in expressions_of(sampler):
        for node in expressions.walk(e.tree):
            if not isinstance(node, (expressions.Member, expressions.Subscript)):
                continue
            if isinstance(node.base, (expressions.Member, expressions.Subscript)):
                continue  # checked as part of the longest chain
            if hook.classic and isinstance(node, expressions.Member) and isinstance(node.base, expressions.Name):
                classic.setdefault(hook.tracepoint, set()).add(node.name)
        for node in _outermost_chains(e.tree):
            if hook.classic:
                continue
            root, steps = _chain_steps(node)
            problem = running.chain_problem(root, steps)
            if problem:
                problems.add(f"{expressions.print_c(node, 'tracepoint')} ({problem})")
    out = []
    for hook in sampler.hooks:
        if hook.tracepoint in classic:
            out += record_differences(hook, classic[hook.tracepoint])
    for problem in sorted(problems):
        out.append(
            f"the running kernel ({platform.release()}) cannot relocate {problem}: vmlinux.h is "
            f"older or newer than this kernel, and the program fails CO-RE relocation when "
            f"loaded here"
        )
    return out


def _outermost_chains(tree):
    """Member chains not inside a longer chain."""
    if isinstance(tree, (expressions.Member, expressions.Subscript)):
        yield tree
        return
    for child in expressions._children(tree):
        yield from _outermost_chains(child)


# --------------------------------------------------------------------------
# entry points


def type_indexes(rezolus_root: Path | None) -> tuple:
    return tuple(vmlinux.index(rezolus_root, arch) for arch in vmlinux.ARCHES)


def reserved_c_names(types: tuple) -> dict[str, str]:
    """Ordinary C identifiers the included headers already define -> where."""
    return _reserved_c_names(tuple(index.sha256 for index in types), types)


@functools.lru_cache(maxsize=4)
def _reserved_c_names(shas: tuple, types: tuple) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in vmlinux.libbpf_identifiers():
        out[name] = "the libbpf headers"
    for index, arch in zip(types, vmlinux.ARCHES):
        for name in index.typedefs:
            out.setdefault(name, f"a typedef in the {arch} vmlinux.h")
        for name in index.constants:
            out.setdefault(name, f"an enum constant in the {arch} vmlinux.h")
    for name in C_IMPLICIT:
        out.setdefault(name, "generated C (BPF_PROG's context / the licence)")
    for name in expressions.BUILTINS:
        out.setdefault(name, "a builtin of expressions")
    return out


def check_year(year: Any) -> int:
    """A year (an int, or its digits as text: Copier's answer is text)."""
    if isinstance(year, str) and year.strip().isdigit():
        year = int(year)
    if isinstance(year, bool) or not isinstance(year, int) or not 1970 <= year <= 9999:
        raise SpecError(f"copyright_year must be a year such as 2026, not {year!r}", "copyright_year")
    return year


def check_attach(attach: Any) -> str:
    if attach not in ATTACH_STYLES:
        raise SpecError(f"attach must be one of {', '.join(ATTACH_STYLES)}, not {attach!r}", "attach")
    return attach


def check_layout(layout: Any) -> str:
    if layout not in LAYOUTS:
        raise SpecError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}", "layout")
    return layout


def parse_families(answers: dict, ctx: _Context, keys: tuple[str, ...]) -> list[Family]:
    families: list[Family] = []
    for key in keys:
        kind = "counter" if key == "counters" else "histogram"
        specs = answers.get(key)
        if specs is None:
            continue
        for i, spec in enumerate(_as_list(specs, key)):
            family, update_specs = parse_family(spec, i, kind)
            if any(f.name == family.name for f in families):
                raise SpecError(
                    f"metric {family.name} is declared twice; one family per name, "
                    f"distinguished by labels",
                    f"{key}[{i}].name",
                )
            families.append(family)
            for j, u in enumerate(update_specs):
                family.updates.append(parse_update(u, family, ctx, j))
    return families


def check_histograms(answers: dict, rezolus_root: Path | None = None) -> list[Family]:
    """Validate the histogram families alone (the question before counters)."""
    hooks = {hook.tracepoint: hook for hook in check_hooks(answers, rezolus_root)}
    ctx = _Context(hooks, type_indexes(rezolus_root), answers.get("attach", "tp_btf"))
    return parse_families(answers, ctx, ("histograms",))


def check_hooks(answers: dict, rezolus_root: Path | None = None) -> list[Hook]:
    """Validate the attach style and tracepoints alone (the questionnaire's middle step)."""
    attach = check_attach(answers.get("attach", "tp_btf"))
    types = type_indexes(rezolus_root)
    reserved = reserved_c_names(types)
    tracepoints = _as_list(answers.get("tracepoints"), "tracepoints")
    if not tracepoints:
        raise SpecError("give at least one tracepoint, for example 'net:netif_receive_skb'", "tracepoints")
    if len(tracepoints) > MAX_TRACEPOINTS:
        raise SpecError(f"{len(tracepoints)} tracepoints; the limit is {MAX_TRACEPOINTS}", "tracepoints")
    hooks: list[Hook] = []
    for i, spec in enumerate(tracepoints):
        try:
            hook = parse_hook(spec, attach, types, reserved)
        except HookError as err:
            raise SpecError(str(err), f"tracepoints[{i}]") from None
        if any(h.event == hook.event for h in hooks):
            raise SpecError(
                f"tracepoint {hook.tracepoint} is listed twice: one consolidated program per "
                f"hook (principle P3) means every family at it shares one program",
                f"tracepoints[{i}]",
            )
        hook.programs = programs_for(hook, attach)
        hooks.append(hook)
    return hooks


def build(answers: Any, rezolus_root: Path | None = None) -> Sampler:
    """Validate `answers` (the questionnaire's keys) and compute the model."""
    if not isinstance(answers, dict):
        raise SpecError(f"the answers must be a mapping of question: answer, not {type(answers).__name__}", "answers")
    group, sampler, description = check_identity(answers)
    modules = rust_module_reserved(rezolus_root, group)
    for what, value in (("group", group), ("sampler", sampler)):
        where = modules[what].get(value)
        if where:
            raise SpecError(
                f"{what} {value!r} would be a Rust module named like {where}, which then "
                f"cannot be named by path there; choose another name",
                what,
            )
    layout = check_layout(answers.get("layout", "totals"))
    year = answers.get("copyright_year")
    if year is not None:
        year = check_year(year)
    hooks = {hook.tracepoint: hook for hook in check_hooks(answers, rezolus_root)}
    ctx = _Context(hooks, type_indexes(rezolus_root), answers.get("attach", "tp_btf"))
    families = parse_families(answers, ctx, ("counters", "histograms"))
    if not families:
        raise SpecError("give at least one counter (or histogram) family", "counters")
    used = {u.hook.tracepoint for f in families for u in f.updates}
    used |= {t for f in families for u in f.updates if u.latency for t, _, _ in u.latency.start}
    unused = [t for t in hooks if t not in used]
    if unused:
        raise SpecError(
            f"tracepoint(s) {', '.join(unused)} have no counter increments or histogram records; "
            f"remove them or count something there",
            "tracepoints",
        )
    result = Sampler(
        group, sampler, description, ctx.attach, layout, list(hooks.values()), families,
        copyright_year=year,
    )
    result.warnings = kernel_warnings(result)
    from rezolus_sampler.emit.layout import lay_out
    from rezolus_sampler.emit.program import emit_hooks

    lay_out(result, reserved_c_names(ctx.types), rust_static_reserved(rezolus_root))
    emit_hooks(result, reserved_c_names(ctx.types))
    return result
