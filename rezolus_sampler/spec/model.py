"""The sampler model: validated answers and every fact the templates print.

`build(answers, rezolus_root)` turns the questionnaire's answers into a
`Sampler`. Every derived fact (slots, bank widths, static names, program
names, argument declarations, index expressions) is computed here once; the
templates for C, Rust and the doc stub only lay the same objects out, so the
three can never disagree.

Invalid answers raise `SpecError` with one message that says what is wrong
and what would be right. Nothing here writes files.
"""

from __future__ import annotations

import difflib
import itertools
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import vmlinux

# Shared with Rezolus: `crate::agent::MAX_CPUS` and the 64-byte cacheline.
MAX_CPUS = 1024
SLOTS_PER_CACHELINE = 8

# Documented limits (README "Limits"): a bank is one CPU's slots of one map.
MAX_FAMILY_SLOTS = 256  # label combinations of one counter family
MAX_BANK_SLOTS = 512  # slots in one map's per-CPU bank: MAX_CPUS * 512 * 8 B = 4 MiB
MAX_TRACEPOINTS = 64
MAX_EXPR_LEN = 200
MAX_DESCRIPTION_LEN = 200
MAX_STATIC_LEN = 64  # keeps every generated declaration within 100 columns
MAX_MAP_NAME_LEN = 12  # keeps each bank lookup on one line

ATTACH_STYLES = ("tp_btf", "raw_tp", "tracepoint")
LAYOUTS = ("totals", "per_cpu")
DEFAULT_MAP = "counters"

# Metadata keys Rezolus or metriken already give a meaning to.
RESERVED_LABELS = {"unit", "acq_group", "sampler", "id", "name", "metric", "description"}

C_KEYWORDS = set(
    """auto break case char const continue default do double else enum extern float for goto
    if inline int long register restrict return short signed sizeof static struct switch
    typedef union unsigned void volatile while bool true false asm typeof""".split()
)
RUST_KEYWORDS = set(
    """as async await break const continue crate dyn else enum extern false fn for if impl in
    let loop match mod move mut pub ref return self static struct super trait true type union
    unsafe use where while abstract become box do final macro override priv try typeof
    unsized virtual yield gen""".split()
)
# Names the generated files already use at file or function scope.
GENERATED_NAMES = {"cpu", "ctx", "args", "counters", "bpf", "stats", "init", "config", "LICENSE"}

SNAKE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
LABEL_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
TRACEPOINT = re.compile(
    r"^(?P<category>[a-z0-9_]+):(?P<event>[a-z0-9_]+)"
    r"(?:@(?P<struct>[a-z0-9_]+))?(?:\((?P<names>[^()]*)\))?$"
)
CHAIN = re.compile(r"\b([A-Za-z_]\w*)((?:->[A-Za-z_]\w*)+)")
UNIT = re.compile(r"^[A-Za-z][A-Za-z/%]*$")


class SpecError(ValueError):
    """An answer that cannot be rendered; the message says how to fix it."""


# --------------------------------------------------------------------------
# small value types


@dataclass(frozen=True)
class Arg:
    name: str
    ctype: str  # as vmlinux.h spells it, e.g. "const struct sk_buff *"

    @property
    def decl(self) -> str:
        """A parameter declaration in Rezolus' pointer-left style."""
        if "(*)" in self.ctype:  # function pointer
            return self.ctype.replace("(*)", f"(*{self.name})", 1)
        base = self.ctype.replace(" *", "*").replace("* *", "**")
        array = re.search(r"\s*(\[\d*\])$", base)
        if array:
            return f"{base[: array.start()]} {self.name}{array.group(1)}"
        return f"{base} {self.name}"

    @property
    def is_pointer(self) -> bool:
        return self.ctype.rstrip().endswith("*")


@dataclass(frozen=True)
class Program:
    name: str
    section: str
    variant: str  # "btf", "raw" or "tracepoint"


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

    @property
    def const(self) -> str:
        return self.name.upper()


@dataclass(frozen=True)
class Slot:
    index: int  # within the map's bank
    static: str  # Rust static name
    metric: str
    labels: tuple[tuple[str, str], ...]

    @property
    def label_text(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.labels)
        return f"{self.metric}{{{inner}}}" if inner else self.metric


@dataclass
class Counter:
    name: str
    description: str
    unit: str | None
    labels: tuple[Label, ...]
    map: str
    base: int = 0  # first slot in its map's bank
    slots: list[Slot] = field(default_factory=list)
    increments: list["Increment"] = field(default_factory=list)

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
class Map:
    """One per-CPU-banked counters map: its slots are its counters' slots in order."""

    name: str
    counters: list[Counter] = field(default_factory=list)
    acq_group: str = ""  # set by lay_out(): "<sampler name>_<map>"

    @property
    def slots(self) -> list[Slot]:
        return [slot for counter in self.counters for slot in counter.slots]

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


@dataclass(frozen=True)
class Expr:
    """A C expression in the two spellings the attach variants need.

    `direct` is the expression as written: tp_btf programs may dereference their
    BTF-typed arguments (CO-RE relocated through vmlinux.h's preserve_access_index),
    and classic tracepoints read `args->field`. `core` spells every pointer chain
    as `BPF_CORE_READ(...)`, which raw_tp programs need.
    """

    direct: str
    core: str

    @property
    def reads(self) -> bool:
        """Whether it reads kernel memory through an argument pointer."""
        return self.direct != self.core

    def for_variant(self, variant: str) -> str:
        return self.core if variant == "raw" else self.direct


@dataclass
class Local:
    """A value computed once per event and shared by the hook's statements.

    In tp_btf/raw_tp twins a local that reads kernel memory is computed in each
    program (direct read in the tp_btf twin, BPF_CORE_READ in the raw_tp twin)
    and passed to the shared handler; other locals are computed in the handler.
    """

    ctype: str
    name: str
    expr: Expr

    @property
    def decl(self) -> str:
        return f"{self.ctype} {self.name}"


@dataclass
class Statement:
    """One counter update: `idx = <terms>;` then a relaxed atomic add into this CPU's bank."""

    guard: str | None  # C condition, or None
    map: str
    terms: list[str]  # summed to the slot index in the bank, e.g. ["NETWORK_BYTES", "1"]
    amount: str | None  # None increments by one
    comment: str  # metric{labels} it updates

    @property
    def add_args(self) -> list[str]:
        """Arguments of `__atomic_fetch_add` (what helpers.h array_add does after its lookup)."""
        return [f"&{self.map}_bank->slot[idx]", self.amount or "1", "__ATOMIC_RELAXED"]


@dataclass
class Block:
    """Consecutive statements under the same guard (one `if`)."""

    guard: str | None
    statements: list[Statement]

    @property
    def conditions(self) -> list[str]:
        return self.guard.split(" && ") if self.guard else []


@dataclass
class Increment:
    counter: Counter
    hook: "Hook"
    fixed: dict[str, str]  # label -> value
    index: dict[str, Expr]  # label -> expression yielding the value's index
    by: Expr | None
    when: Expr | None


@dataclass
class Hook:
    category: str
    event: str
    args: tuple[Arg, ...]
    raw_struct: str | None  # classic tracepoints: trace_event_raw_<raw_struct>
    programs: tuple[Program, ...] = ()
    increments: list[Increment] = field(default_factory=list)
    locals: list[Local] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)

    @property
    def maps(self) -> list[str]:
        """Maps this hook's program updates, in first-use order (one lookup each)."""
        return list(dict.fromkeys(statement.map for statement in self.statements))

    @property
    def passed_locals(self) -> list[Local]:
        """Locals each twin computes and passes to the shared handler."""
        return [local for local in self.locals if local.expr.reads]

    @property
    def handler_locals(self) -> list[Local]:
        """Locals the shared handler computes itself."""
        return [local for local in self.locals if not local.expr.reads]

    @property
    def handler_params(self) -> list[str]:
        return [local.decl for local in self.passed_locals] + self.param_decls

    def handler_call(self, variant: str) -> list[str]:
        return [local.expr.for_variant(variant) for local in self.passed_locals] + self.arg_list

    def body_locals(self, variant: str) -> list[str]:
        """`type name = expr` of every local, for a program without a shared handler."""
        return [f"{local.decl} = {local.expr.for_variant(variant)}" for local in self.locals]

    @property
    def blocks(self) -> list[Block]:
        out: list[Block] = []
        for statement in self.statements:
            if out and out[-1].guard == statement.guard:
                out[-1].statements.append(statement)
            else:
                out.append(Block(statement.guard, [statement]))
        return out

    @property
    def tracepoint(self) -> str:
        return f"{self.category}:{self.event}"

    @property
    def handler(self) -> str:
        return f"handle_{self.event}"

    @property
    def param_decls(self) -> list[str]:
        return [arg.decl for arg in self.args]

    @property
    def arg_list(self) -> list[str]:
        return [arg.name for arg in self.args]



@dataclass
class Sampler:
    group: str
    sampler: str
    description: str
    attach: str
    layout: str
    hooks: list[Hook]
    counters: list[Counter]
    maps: list[Map]

    @property
    def name(self) -> str:
        return f"{self.group}_{self.sampler}"

    @property
    def programs(self) -> list[Program]:
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
        return [c.name for c in self.counters]

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
        return any(inc.index for c in self.counters for inc in c.increments)

    @property
    def memory_bytes(self) -> int:
        return sum(m.bytes for m in self.maps)


# --------------------------------------------------------------------------
# answer checks


def check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not SNAKE.match(value):
        raise SpecError(
            f"{what} {value!r} must be snake_case: lowercase letters, digits and single "
            f"underscores, starting with a letter (for example 'packet_drops')"
        )
    if value in C_KEYWORDS or value in RUST_KEYWORDS:
        raise SpecError(f"{what} {value!r} is a C or Rust keyword; choose another name")
    return value


def check_text(value: Any, what: str, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{what} must be a non-empty line of text")
    bad = [c for c in ('"', "\\", "\n", "\r", "`") if c in value]
    if bad or ")]" in value or "*/" in value or "/*" in value:
        shown = ", ".join(repr(c) for c in bad + [s for s in (")]", "*/", "/*") if s in value])
        raise SpecError(
            f"{what} {value!r} contains {shown}: these break the generated C/Rust or "
            f"Rezolus' build.rs metric parser; rephrase without them"
        )
    if len(value) > MAX_DESCRIPTION_LEN:
        raise SpecError(f"{what} is {len(value)} characters; keep it under {MAX_DESCRIPTION_LEN}")
    return value.strip()


def check_expr(value: Any, what: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{what} must be a C expression, for example 'skb->len'")
    expr = value.strip()
    if len(expr) > MAX_EXPR_LEN:
        raise SpecError(f"{what} is longer than {MAX_EXPR_LEN} characters")
    for bad, why in (
        (";", "a statement separator"),
        ("{", "a brace"),
        ("}", "a brace"),
        ("//", "a comment"),
        ("/*", "a comment"),
        ("#", "a preprocessor token"),
        ("\n", "a newline"),
        ('"', "a string literal"),
        ("\\", "a backslash"),
    ):
        if bad in expr:
            raise SpecError(f"{what} {expr!r} contains {why}; give a single C expression")
    if re.search(r"(?<![=!<>])=(?!=)|\+\+|--(?!>)|\+=|-=", expr):
        raise SpecError(f"{what} {expr!r} assigns; give a side-effect-free C expression")
    depth = 0
    for ch in expr:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            break
    if depth != 0:
        raise SpecError(f"{what} {expr!r} has unbalanced parentheses")
    return expr


def _as_list(value: Any, what: str) -> list:
    if not isinstance(value, list):
        raise SpecError(f"{what} must be a list")
    return value


def _as_map(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise SpecError(f"{what} must be a mapping")
    return value


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


# --------------------------------------------------------------------------
# hooks

_ARG_NAMES = {
    "sk_buff": "skb",
    "request": "rq",
    "task_struct": "task",
    "net_device": "dev",
    "pt_regs": "regs",
    "sock": "sk",
    "linux_binprm": "bprm",
    "request_queue": "q",
    "mm_struct": "mm",
    "vm_area_struct": "vma",
    "netdev_queue": "txq",
}


def default_arg_name(ctype: str, position: int) -> str:
    m = re.search(r"struct (\w+) \*$", ctype)
    if m:
        name = _ARG_NAMES.get(m.group(1), m.group(1))
        if name not in C_KEYWORDS:
            return name
    return f"arg{position}"


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if names.count(name) > 1:
            seen[name] = seen.get(name, 0) + 1
            out.append(f"{name}{seen[name]}")
        else:
            out.append(name)
    return out


TRACEFS_EVENTS = Path("/sys/kernel/tracing/events")


def running_kernel_categories(event: str) -> list[str] | None:
    """Categories holding `event` in the running kernel's tracefs; None if unreadable."""
    try:
        if not any(TRACEFS_EVENTS.iterdir()):
            return None
        return sorted(p.name for p in TRACEFS_EVENTS.iterdir() if (p / event).is_dir())
    except OSError:
        return None


def _tracefs_fields(category: str, event: str) -> list[str] | None:
    fmt = TRACEFS_EVENTS / category / event / "format"
    try:
        text = fmt.read_text()
    except OSError:
        return None
    names = re.findall(r"field:[^;]*?(\w+)(?:\[\d*\])?;\s*offset", text)
    return [n for n in names if not n.startswith("common_")]


def class_from_tracefs(category: str, event: str, raw_structs: dict) -> str | None:
    """The event class whose record has the event's fields, per the running kernel.

    Several records can share field names: structs named after another event
    are that event's own, and among the rest the one sharing the longest name
    prefix with the event wins (sched_process_free -> sched_process_template).
    Dynamic fields are `__data_loc_<name>` in BTF and `<name>` in tracefs.
    """
    fields = _tracefs_fields(category, event)
    if fields is None:
        return None
    events = vmlinux.signatures(None).btf_args

    def names(record) -> list[str]:
        return [f.removeprefix("__data_loc_") for _, f in record]

    matches = [k for k, v in raw_structs.items() if names(v) == fields and k not in events]
    if not matches:
        return None
    prefix = lambda k: len(os.path.commonprefix([k, event]))  # noqa: E731
    best = max(prefix(k) for k in matches)
    winners = [k for k in matches if prefix(k) == best]
    return winners[0] if len(winners) == 1 else None


def _classic_struct(category: str, event: str, explicit: str | None, sigs) -> str:
    if explicit:
        if explicit not in sigs.raw_structs:
            raise SpecError(
                f"{category}:{event}@{explicit}: vmlinux.h has no struct trace_event_raw_{explicit}"
                + _suggest(explicit, list(sigs.raw_structs))
            )
        return explicit
    if event in sigs.raw_structs:
        return event
    known = vmlinux.event_classes().get(f"{category}:{event}")
    if known in sigs.raw_structs:
        return known
    found = class_from_tracefs(category, event, sigs.raw_structs)
    if found:
        return found
    raise SpecError(
        f"{category}:{event} is defined through an event class and vmlinux.h has no "
        f"struct trace_event_raw_{event}; name the class struct, for example "
        f"'{category}:{event}@<class>' (see 'struct trace_event_raw_<class>' in vmlinux.h)"
    )


def parse_hook(spec: Any, attach: str, sigs, aarch64_sigs) -> Hook:
    if not isinstance(spec, str):
        raise SpecError(f"tracepoint {spec!r} must be a string like 'net:netif_receive_skb'")
    m = TRACEPOINT.match(spec.replace(" ", ""))
    if not m:
        raise SpecError(
            f"tracepoint {spec!r} must look like 'category:event', optionally naming the "
            f"arguments: 'block:block_rq_complete(rq, error, nr_bytes)'"
        )
    category, event = m.group("category"), m.group("event")
    if event not in sigs.btf_args:
        raise SpecError(
            f"unknown tracepoint {category}:{event}: vmlinux.h has no btf_trace_{event}"
            + _suggest(event, list(sigs.btf_args))
        )
    if event not in aarch64_sigs.btf_args:
        raise SpecError(f"tracepoint {event} exists in the x86_64 vmlinux.h but not in aarch64's")
    located = running_kernel_categories(event)
    if located and category not in located:
        raise SpecError(
            f"tracepoint {category}:{event}: the running kernel has {event} in category "
            f"{', '.join(located)}, not {category!r}"
        )
    names = [n for n in (m.group("names") or "").split(",") if n]
    if attach == "tracepoint":
        if names:
            raise SpecError(
                f"{spec}: classic tracepoints take their record's fields (args->field); "
                f"argument names apply to tp_btf and raw_tp"
            )
        struct = _classic_struct(category, event, m.group("struct"), sigs)
        args = tuple(Arg(f, t) for t, f in sigs.raw_structs[struct])
        return Hook(category, event, args, struct)
    if m.group("struct"):
        raise SpecError(f"{spec}: '@struct' applies only to attach style 'tracepoint'")
    types = sigs.btf_args[event]
    if len(names) > len(types):
        raise SpecError(
            f"{category}:{event} has {len(types)} arguments ({', '.join(types)}); "
            f"{len(names)} names were given"
        )
    defaults = _unique([default_arg_name(t, i) for i, t in enumerate(types)])
    final = names + defaults[len(names):]
    for name in final:
        check_name(name, f"argument name in {spec}")
    if len(set(final)) != len(final):
        raise SpecError(f"{spec}: argument names must be distinct, got {', '.join(final)}")
    return Hook(category, event, tuple(Arg(n, t) for n, t in zip(final, types)), None)


def make_expr(expr: str, hook: Hook, attach: str) -> Expr:
    """Both spellings of an expression over the hook's arguments.

    raw_tp arguments are plain integers to the verifier, so for raw styles a
    pointer chain `skb->len` is also spelled `BPF_CORE_READ(skb, len)`, which
    verifies and relocates across kernels (CO-RE). Classic tracepoint records
    are read directly: `args->len`.
    """
    if attach == "tracepoint":
        return Expr(expr, expr)
    pointers = {a.name for a in hook.args if a.is_pointer}

    def core_read(m: re.Match) -> str:
        base, chain = m.group(1), m.group(2)
        if base not in pointers:
            return m.group(0)
        fields = chain.split("->")[1:]
        return f"BPF_CORE_READ({base}, {', '.join(fields)})"

    return Expr(expr, CHAIN.sub(core_read, expr))


def check_names_used(expr: str, hook: Hook, attach: str, what: str) -> None:
    """Refuse references to argument names the hook does not have."""
    if attach == "tracepoint":
        if re.search(r"\bargs\b", expr) is None:
            return
        fields = {a.name for a in hook.args}
        for used in re.findall(r"\bargs->(\w+)", expr):
            if used not in fields:
                raise SpecError(
                    f"{what}: {hook.tracepoint}'s record has no field {used!r}; fields: "
                    f"{', '.join(sorted(fields))}" + _suggest(used, sorted(fields))
                )
        return
    stripped = re.sub(r"(->|\.)\s*[A-Za-z_]\w*", "", expr)
    stripped = re.sub(r"BPF_CORE_READ\(\s*(\w+)[^)]*\)", r"\1", stripped)
    names = {a.name for a in hook.args}
    for ident in re.findall(r"\b[A-Za-z_]\w*\b", stripped):
        if ident in names or ident in C_KEYWORDS or ident.isupper() or ident.startswith("bpf_"):
            continue
        if ident in ("u8", "u16", "u32", "u64", "s32", "s64", "__u32", "__u64"):
            continue
        raise SpecError(
            f"{what}: {ident!r} is not an argument of {hook.tracepoint} "
            f"(arguments: {', '.join(f'{a.name}: {a.ctype}' for a in hook.args)})"
            + _suggest(ident, sorted(names))
        )


# --------------------------------------------------------------------------
# counters


def parse_label(name: Any, spec: Any, counter: str) -> Label:
    check_name(name, f"label of {counter}")
    if name in RESERVED_LABELS:
        raise SpecError(
            f"label {name!r} of {counter} is reserved by Rezolus metadata "
            f"({', '.join(sorted(RESERVED_LABELS))}); choose another name"
        )
    overflow = None
    if isinstance(spec, dict):
        unknown = set(spec) - {"values", "overflow"}
        if unknown:
            raise SpecError(f"label {name} of {counter}: unknown keys {sorted(unknown)}")
        overflow = spec.get("overflow")
        spec = spec.get("values")
    if isinstance(spec, bool):
        spec = None
    if isinstance(spec, int):
        if not 1 <= spec <= MAX_FAMILY_SLOTS:
            raise SpecError(
                f"label {name} of {counter}: cardinality {spec} must be 1..{MAX_FAMILY_SLOTS}"
            )
        values = tuple(str(i) for i in range(spec))
    elif isinstance(spec, list) and spec:
        values = tuple(str(v) for v in spec)
        for v in values:
            if not LABEL_VALUE.match(v):
                raise SpecError(
                    f"label {name} of {counter}: value {v!r} must be letters, digits, '_', "
                    f"'.' or '-', starting with a letter or digit"
                )
        dup = [v for v in set(values) if values.count(v) > 1]
        if dup:
            raise SpecError(f"label {name} of {counter}: duplicate values {sorted(dup)}")
    else:
        raise SpecError(
            f"label {name} of {counter} needs explicit values ({name}: [read, write]) "
            f"or a bare cardinality ({name}: 8)"
        )
    if overflow is not None:
        overflow = str(overflow)
        if overflow not in values:
            raise SpecError(
                f"label {name} of {counter}: overflow value {overflow!r} must be one of "
                f"its values {list(values)}"
            )
    return Label(name, values, overflow)


def static_suffix(label: Label, value: str) -> str:
    token = re.sub(r"[^A-Za-z0-9]", "_", value).upper()
    return f"{label.const}_{token}" if label.numeric else token


def parse_counter(spec: Any, position: int) -> tuple[Counter, list]:
    spec = _as_map(spec, f"counter #{position + 1}")
    allowed = {"name", "description", "unit", "labels", "map", "increments"}
    unknown = set(spec) - allowed
    if unknown:
        raise SpecError(
            f"counter #{position + 1}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})"
        )
    name = check_name(spec.get("name"), f"counter #{position + 1} name")
    description = check_text(spec.get("description"), f"description of {name}")
    unit = spec.get("unit")
    if unit is not None and (not isinstance(unit, str) or not UNIT.match(unit)):
        raise SpecError(f"unit of {name} {unit!r} must be a word such as 'bytes' or 'packets'")
    labels_spec = _as_map(spec.get("labels") or {}, f"labels of {name}")
    labels = tuple(parse_label(k, v, name) for k, v in labels_spec.items())
    map_name = check_name(spec.get("map", DEFAULT_MAP), f"map of {name}")
    if len(map_name) > MAX_MAP_NAME_LEN or map_name in GENERATED_NAMES - {DEFAULT_MAP}:
        raise SpecError(
            f"map name {map_name!r} of {name} must be at most {MAX_MAP_NAME_LEN} characters and "
            f"not one of {sorted(GENERATED_NAMES - {DEFAULT_MAP})}"
        )
    counter = Counter(name, description, unit, labels, map_name)
    if counter.cardinality > MAX_FAMILY_SLOTS:
        product = " x ".join(str(label.cardinality) for label in labels)
        raise SpecError(
            f"{name} has {product} = {counter.cardinality} label combinations; the limit is "
            f"{MAX_FAMILY_SLOTS} per family (fixed-cardinality arrays, principle P2). "
            f"Coarsen a label or split the family"
        )
    increments = spec.get("increments")
    if not increments:
        raise SpecError(f"{name} needs at least one increment: where (which tracepoint) it counts")
    return counter, _as_list(increments, f"increments of {name}")


def parse_increment(spec: Any, counter: Counter, hooks: dict[str, Hook], attach: str) -> Increment:
    if isinstance(spec, str):
        spec = {"at": spec}
    spec = _as_map(spec, f"increment of {counter.name}")
    unknown = set(spec) - {"at", "labels", "index", "by", "when"}
    if unknown:
        raise SpecError(f"increment of {counter.name}: unknown keys {sorted(unknown)}")
    at = str(spec.get("at", "")).replace(" ", "")
    if at not in hooks:
        raise SpecError(
            f"increment of {counter.name} is at {at!r}, which is not one of this sampler's "
            f"tracepoints ({', '.join(hooks)})"
        )
    hook = hooks[at]
    fixed = {str(k): str(v) for k, v in _as_map(spec.get("labels") or {}, "labels").items()}
    index_raw = _as_map(spec.get("index") or {}, "index")
    declared = {label.name: label for label in counter.labels}
    where = f"{counter.name} at {at}"
    for key in list(fixed) + list(index_raw):
        if key not in declared:
            raise SpecError(f"{where}: {key!r} is not a label of {counter.name}")
    both = set(fixed) & set(index_raw)
    if both:
        raise SpecError(f"{where}: label(s) {sorted(both)} are both fixed and computed")
    missing = set(declared) - set(fixed) - set(index_raw)
    if missing:
        raise SpecError(
            f"{where}: give every label a fixed value (labels:) or an index expression "
            f"(index:); missing {sorted(missing)}"
        )
    for key, value in fixed.items():
        if value not in declared[key].values:
            raise SpecError(
                f"{where}: {key}={value!r} is not one of {list(declared[key].values)}"
            )
    index = {}
    for key, raw in index_raw.items():
        expr = check_expr(raw, f"{where}: index of {key}")
        check_names_used(expr, hook, attach, f"{where}: index of {key}")
        index[key] = make_expr(expr, hook, attach)
    by = when = None
    if spec.get("by") not in (None, 1, "1"):
        by = check_expr(spec["by"], f"{where}: by")
        check_names_used(by, hook, attach, f"{where}: by")
        by = make_expr(by, hook, attach)
    if spec.get("when") is not None:
        when = check_expr(spec["when"], f"{where}: when")
        check_names_used(when, hook, attach, f"{where}: when")
        when = make_expr(when, hook, attach)
    return Increment(counter, hook, fixed, index, by, when)


# --------------------------------------------------------------------------
# layout and code facts


def lay_out(counters: list[Counter], sampler_name: str) -> list[Map]:
    maps: dict[str, Map] = {}
    for counter in counters:
        m = maps.setdefault(counter.map, Map(counter.map))
        counter.base = m.n
        combos = itertools.product(*(label.values for label in counter.labels))
        for offset, combo in enumerate(combos):
            pairs = tuple(zip((label.name for label in counter.labels), combo))
            suffix = "_".join(
                static_suffix(label, value) for label, value in zip(counter.labels, combo)
            )
            static = counter.const + (f"_{suffix}" if suffix else "")
            counter.slots.append(Slot(counter.base + offset, static, counter.name, pairs))
        m.counters.append(counter)
    for m in maps.values():
        if m.n > MAX_BANK_SLOTS:
            raise SpecError(
                f"map {m.name} holds {m.n} slots; the limit is {MAX_BANK_SLOTS} per bank "
                f"({MAX_CPUS} CPUs x {MAX_BANK_SLOTS} x 8 B = "
                f"{MAX_CPUS * MAX_BANK_SLOTS * 8 // 2**20} MiB). Put families in separate maps "
                f"(map: <name>) or coarsen labels"
            )
        m.acq_group = f"{sampler_name}_{m.name}"
        if m.name == sampler_name:
            raise SpecError(f"map name {m.name!r} would repeat the sampler name; choose another")
    return list(maps.values())


def _local_name(expr: str, taken: set[str], fallback: str) -> str:
    m = re.fullmatch(r"BPF_CORE_READ\([^)]*?(\w+)\)|\w+->(?:\w+->)*(\w+)|args->(\w+)", expr)
    base = fallback
    if m:
        base = next(g for g in m.groups() if g)
    base = re.sub(r"\W", "_", base)
    if base in taken or base in C_KEYWORDS or base in GENERATED_NAMES:
        base = f"{base}_value" if f"{base}_value" not in taken else fallback
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}{n}"
    taken.add(name)
    return name


def emit_hook(hook: Hook) -> None:
    """Compute the locals and statements of a hook's one consolidated program."""
    taken = {a.name for a in hook.args} | {"cpu", "ctx", "args", "idx"}
    taken |= {f"{inc.counter.map}_bank" for inc in hook.increments}
    values: dict[tuple[str, str], str] = {}  # (kind, raw_tp spelling) -> local name

    def local(kind: str, ctype: str, expr: Expr, fallback: str) -> str:
        key = (kind, expr.core)
        if key not in values:
            name = _local_name(expr.core, taken, fallback)
            values[key] = name
            hook.locals.append(Local(ctype, name, expr))
        return values[key]

    for inc in hook.increments:
        counter = inc.counter
        terms = [counter.const]
        guards = []
        strides = dict(zip((label.name for label in counter.labels), counter.strides()))
        fixed_offset = 0
        for label in counter.labels:
            stride = strides[label.name]
            if label.name in inc.fixed:
                fixed_offset += label.values.index(inc.fixed[label.name]) * stride
                continue
            var = local("index", "u32", inc.index[label.name], label.name)
            if label.overflow is not None:
                over = label.values.index(label.overflow)
                # clamp: out-of-range indexes count into the declared overflow value
                var_expr = f"({var} < {label.cardinality} ? {var} : {over})"
            else:
                guards.append(f"{var} < {label.cardinality}")
                var_expr = var
            terms.append(var_expr if stride == 1 else f"{var_expr} * {stride}")
        if fixed_offset:
            terms.insert(1, str(fixed_offset))
        if inc.when:
            cond = local("when", "u32", inc.when, "cond") if inc.when.reads else inc.when.direct
            guards.insert(0, f"({cond})")
        amount = None
        if inc.by is not None:
            bare = inc.by.direct in {a.name for a in hook.args}
            amount = inc.by.direct if bare else local("by", "u64", inc.by, "amount")
        labels = [f"{k}={v}" for k, v in inc.fixed.items()]
        labels += [f"{k}=<{k}>" for k in inc.index]
        comment = f"{counter.name}{{{', '.join(labels)}}}" if labels else counter.name
        hook.statements.append(
            Statement(" && ".join(guards) or None, counter.map, terms, amount, comment)
        )


def programs_for(hook: Hook, attach: str) -> tuple[Program, ...]:
    if attach == "tp_btf":
        return (
            Program(f"{hook.event}_btf", f"tp_btf/{hook.event}", "btf"),
            Program(f"{hook.event}_raw", f"raw_tp/{hook.event}", "raw"),
        )
    if attach == "raw_tp":
        return (Program(hook.event, f"raw_tp/{hook.event}", "raw"),)
    return (Program(hook.event, f"tracepoint/{hook.category}/{hook.event}", "tracepoint"),)


# --------------------------------------------------------------------------
# entry points


def check_hooks(answers: dict, rezolus_root: Path | None = None) -> list[Hook]:
    """Validate the attach style and tracepoints alone (the questionnaire's middle step)."""
    attach = answers.get("attach", "tp_btf")
    if attach not in ATTACH_STYLES:
        raise SpecError(f"attach must be one of {', '.join(ATTACH_STYLES)}, not {attach!r}")
    sigs = vmlinux.signatures(rezolus_root, "x86_64")
    arm = vmlinux.signatures(rezolus_root, "aarch64")
    tracepoints = _as_list(answers.get("tracepoints"), "tracepoints")
    if not tracepoints:
        raise SpecError("give at least one tracepoint, for example 'net:netif_receive_skb'")
    if len(tracepoints) > MAX_TRACEPOINTS:
        raise SpecError(f"{len(tracepoints)} tracepoints; the limit is {MAX_TRACEPOINTS}")
    hooks: list[Hook] = []
    for spec in tracepoints:
        hook = parse_hook(spec, attach, sigs, arm)
        if any(h.event == hook.event for h in hooks):
            raise SpecError(
                f"tracepoint {hook.tracepoint} is listed twice: one consolidated program per "
                f"hook (principle P3) means every counter at it shares one program"
            )
        hook.programs = programs_for(hook, attach)
        hooks.append(hook)
    return hooks


def build(answers: dict, rezolus_root: Path | None = None) -> Sampler:
    """Validate `answers` (the questionnaire's keys) and compute the model."""
    group = check_name(answers.get("group"), "group")
    sampler = check_name(answers.get("sampler"), "sampler")
    name = f"{group}_{sampler}"
    description = check_text(answers.get("description"), "description")
    attach = answers.get("attach", "tp_btf")  # validated by check_hooks below
    layout = answers.get("layout", "totals")
    if layout not in LAYOUTS:
        raise SpecError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")

    hooks = {hook.tracepoint: hook for hook in check_hooks(answers, rezolus_root)}

    counters_spec = _as_list(answers.get("counters"), "counters")
    if not counters_spec:
        raise SpecError("give at least one counter")
    counters, increments = [], []
    for i, spec in enumerate(counters_spec):
        counter, inc_specs = parse_counter(spec, i)
        if any(c.name == counter.name for c in counters):
            raise SpecError(
                f"counter {counter.name} is declared twice; one family per name, "
                f"distinguished by labels"
            )
        counters.append(counter)
        for inc in inc_specs:
            increment = parse_increment(inc, counter, hooks, attach)
            counter.increments.append(increment)
            increment.hook.increments.append(increment)
            increments.append(increment)

    maps = lay_out(counters, name)
    statics = [slot.static for m in maps for slot in m.slots]
    too_long = [name for name in statics if len(name) > MAX_STATIC_LEN]
    if too_long:
        raise SpecError(
            f"static name {too_long[0]} is {len(too_long[0])} characters (metric name plus label "
            f"values); the limit is {MAX_STATIC_LEN}: shorten the metric name or label values"
        )
    clash = sorted({s for s in statics if statics.count(s) > 1})
    reserved = {"BPF_RUN_COUNT", "BPF_RUN_TIME"} | {m.acq_static for m in maps}
    clash += sorted(set(statics) & reserved)
    if clash:
        raise SpecError(
            f"two label combinations produce the same static name ({', '.join(clash)}); "
            f"rename a counter or label value"
        )
    unused = [h.tracepoint for h in hooks.values() if not h.increments]
    if unused:
        raise SpecError(
            f"tracepoint(s) {', '.join(unused)} have no counter increments; remove them or "
            f"count something there"
        )
    for hook in hooks.values():
        emit_hook(hook)
    return Sampler(group, sampler, description, attach, layout, list(hooks.values()), counters, maps)
