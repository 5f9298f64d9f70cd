"""Hypothesis strategies over the whole answers space.

Tracepoints come from every event this machine can load (present in both
architectures' vmlinux.h and in the running kernel, with the same
signature), expressions from a grammar over each hook's typed arguments as
the model itself types them (members walked through vmlinux.h's structs),
and families, labels, layouts and attach styles from their full ranges
within the documented limits. `mutations` turns a valid spec into an
invalid one, the way users and hostile inputs do.
"""

from __future__ import annotations

import functools
import re
import subprocess

from hypothesis import strategies as st

from rezolus_sampler.spec import expr as E
from rezolus_sampler.spec import model, running
from rezolus_sampler.spec.ctype import CType
from rezolus_sampler.spec.hooks import TRACEFS_EVENTS, record_differences

ATTACH = ("tp_btf", "raw_tp", "tracepoint")
CASTS = ("u8", "u16", "u32", "u64", "s32", "s64", "int", "unsigned int", "long", "bool")
BINARY = ("+", "-", "*", "/", "%", "<<", ">>", "&", "|", "^", "<", "<=", ">", ">=", "==", "!=",
          "&&", "||")  # fmt: skip
LABEL_NAMES = ("op", "kind", "lane", "state", "dir", "cls")


@functools.lru_cache(maxsize=1)
def running_signatures() -> dict[str, str]:
    """btf_trace_<event> signatures of the running kernel (bpftool), spaces removed."""
    out = subprocess.run(
        ["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "c"],
        capture_output=True, text=True, check=True,
    ).stdout
    found = re.findall(r"^typedef void \(\*btf_trace_(\w+)\)\((.*)\);$", out, re.M)
    return {event: args.replace(" ", "") for event, args in found}


@functools.lru_cache(maxsize=1)
def categories() -> dict[str, str]:
    return {p.name: p.parent.name for p in TRACEFS_EVENTS.glob("*/*") if p.is_dir()}


@functools.lru_cache(maxsize=4)
def pool(attach: str) -> tuple[str, ...]:
    """'category:event' for every event this kernel loads with `attach`, as vmlinux.h types it."""
    x86, arm = model.type_indexes(None)
    running, cats = running_signatures(), categories()
    out = []
    for event, args in sorted(x86.tracepoints.items()):
        if event not in arm.tracepoints or event not in cats or event not in running:
            continue
        mine = ",".join(["void*"] + [s for s, _ in args]).replace(" ", "")
        if mine != running[event]:
            continue
        tracepoint = f"{cats[event]}:{event}"
        if attach == "tracepoint":
            try:
                hook = model.check_hooks({"attach": attach, "tracepoints": [tracepoint]})[0]
            except model.SpecError:
                continue
            fields = [n for n, t in hook_leaves(hook)]
            if not fields or record_differences(hook, {f.split("->")[1] for f in fields}):
                continue
        out.append(tracepoint)
    return tuple(out)


def hook_leaves(hook, types=None) -> list[tuple[str, CType]]:
    """Integer-valued expressions one or two hops from the hook's arguments."""
    types = types or model.type_indexes(None)
    x86 = types[0]
    leaves: list[tuple[str, CType]] = []

    def members(text: str, record: CType, hops: int, there: str | None) -> None:
        found = x86.members(record) or {}
        here = running.members(there) if there else {}  # what this kernel can relocate
        here = here or {}
        for name, m in list(found.items())[:60]:
            kind = "record" if m.type.is_record else m.type.kind
            if name not in here or not running.compatible(kind, m.bits, here[name]):
                continue
            below = here[name].record
            if hook.classic and text == "args->" and name in ("ent", "__data"):
                continue  # the common header: not readable by tracepoint programs
            if m.type.is_integer and (m.bits is None or hops == 1):
                leaves.append((f"{text}{name}", m.type))
            elif (m.type.is_array and m.type.target.is_integer and m.type.length
                  and here[name].length == m.type.length):
                leaves.append((f"{text}{name}[{m.type.length - 1}]", m.type.target))
            elif m.type.is_record and not text.endswith("."):
                members(f"{text}{name}.", m.type, hops, below)
            elif m.type.is_pointer and m.type.target.is_record and hops < 2 and not hook.classic:
                members(f"{text}{name}->", m.type.target, hops + 1, below)

    for name, t in hook.scope_args:
        if t.is_integer:
            leaves.append((name, t))
        elif t.is_pointer and t.target.is_record:
            members(f"{name}->", t.target, 1, t.target.code)
    return leaves


# --------------------------------------------------------------------------
# expressions


def literal() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(0, 64).map(str),
        st.integers(0, 2**32).map(hex),
        st.sampled_from(["0xff", "0xffffffff", "1u", "4096", "1000000000", "0x7fffffffffffffff"]),
    )


def expressions(leaves: list[tuple[str, CType]], depth: int = 3) -> st.SearchStrategy[str]:
    base = st.one_of(
        st.sampled_from([text for text, _ in leaves]) if leaves else literal(),
        literal(),
        st.sampled_from(list(E.BUILTINS)),
    )

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(st.sampled_from(["-", "~", "!"]), inner).map(lambda t: f"{t[0]}({t[1]})"),
            st.tuples(inner, st.sampled_from(BINARY), inner).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
            st.tuples(inner, inner, inner).map(lambda t: f"({t[0]}) ? ({t[1]}) : ({t[2]})"),
            st.tuples(st.sampled_from(CASTS), inner).map(lambda t: f"({t[0]})({t[1]})"),
        )

    return st.recursive(base, extend, max_leaves=depth * 2).filter(lambda s: len(s) <= 200)


@st.composite
def checked_expression(draw, hook, role: str, fallback: str | None = None):
    """An expression the checker accepts for `role` at `hook` (the grammar's refusals
    are covered by test_expression_refusals_name_the_construct)."""
    leaves = [(text, None) for text in checked_leaves(hook, "value")]
    scope = E.Scope(hook.tracepoint, hook.scope_args, hook.classic, model.type_indexes(None),
                    tuple(E.BUILTINS))
    for _ in range(4):
        text = draw(expressions(leaves))
        try:
            checked = E.check(text, scope, role, role)
        except E.ExprError:
            continue
        if role == "index" and checked.const is not None:
            continue  # a constant index is a fixed label (the model refuses one out of range)
        return text
    if fallback is not None:
        return fallback
    candidates = checked_leaves(hook, role)
    return draw(st.sampled_from(candidates)) if candidates else "current_thread"


_CHECKED: dict = {}


def checked_leaves(hook, role: str) -> list[str]:
    """The leaves the checker accepts for `role` (on both architectures)."""
    key = (hook.tracepoint, hook.classic, role)
    if key not in _CHECKED:
        scope = E.Scope(hook.tracepoint, hook.scope_args, hook.classic, model.type_indexes(None),
                        tuple(E.BUILTINS))
        ok = []
        for text, _ in hook_leaves(hook):
            try:
                E.check(text, scope, role, role)
                ok.append(text)
            except E.ExprError:
                pass
        _CHECKED[key] = ok
    return _CHECKED[key]


# --------------------------------------------------------------------------
# specs


@st.composite
def label_set(draw, limit: int):
    labels, product = {}, 1
    for name in draw(st.lists(st.sampled_from(LABEL_NAMES), max_size=2, unique=True)):
        room = limit // product
        if room < 1:
            break
        k = draw(st.integers(1, min(room, limit)))
        if draw(st.booleans()):
            values = [f"v{i}" for i in range(k)]
            spec = values
        else:
            values = [str(i) for i in range(k)]
            spec = k
        if draw(st.booleans()):
            spec = {"values": values if isinstance(spec, list) else k, "overflow": draw(st.sampled_from(values))}
            if not isinstance(spec["values"], list):
                spec["values"] = values
        labels[name] = spec
        product *= k
    return labels


def label_values(spec) -> list[str]:
    if isinstance(spec, dict):
        spec = spec["values"]
    return [str(i) for i in range(spec)] if isinstance(spec, int) else list(spec)


@st.composite
def updates(draw, hooks, labels, kind: str):
    chosen = draw(st.lists(st.sampled_from(hooks), min_size=1, max_size=min(2, len(hooks)),
                           unique_by=lambda h: h.tracepoint))
    out = []
    for hook in chosen:
        u: dict = {"at": hook.tracepoint}
        for name, spec in labels.items():
            if draw(st.booleans()):
                u.setdefault("labels", {})[name] = draw(st.sampled_from(label_values(spec)))
            else:
                u.setdefault("index", {})[name] = draw(checked_expression(hook, "index"))
        if draw(st.integers(0, 3)) == 0:
            u["when"] = draw(checked_expression(hook, "when", fallback=None))
        if kind == "counter" and draw(st.booleans()):
            u["by"] = draw(checked_expression(hook, "by", fallback="1"))
        if kind == "histogram":
            others = [h for h in hooks]
            if draw(st.booleans()) and others:
                starts = draw(st.lists(st.sampled_from(others), min_size=1, max_size=2,
                                       unique_by=lambda h: h.tracepoint))
                u["latency"] = {
                    "start": [{"at": s.tracepoint, "key": draw(checked_expression(s, "key", "current_thread"))}
                              for s in starts],
                    "key": draw(checked_expression(hook, "key", "current_thread")),
                }
            else:
                u["value"] = draw(checked_expression(hook, "value"))
        out.append(u)
    return out


@st.composite
def sampler_spec(draw, sampler: str):
    attach = draw(st.sampled_from(ATTACH))
    events = draw(st.lists(st.sampled_from(pool(attach)), min_size=1, max_size=3, unique=True))
    hooks = model.check_hooks({"attach": attach, "tracepoints": events})
    layout = draw(st.sampled_from(model.LAYOUTS))
    name = f"p_{sampler}"
    counters, histograms = [], []
    map_slots: dict[str, int] = {}
    for i in range(draw(st.integers(0, 3))):
        labels = draw(label_set(model.MAX_FAMILY_SLOTS))
        card = 1
        for spec in labels.values():
            card *= len(label_values(spec))
        map_name = next(m for m in ("counters", "second", "third", "fourth")
                        if map_slots.get(m, 0) + card <= model.MAX_BANK_SLOTS)
        map_slots[map_name] = map_slots.get(map_name, 0) + card
        family = {"name": f"{name}_c{i}", "description": f"Counter family {i}", "labels": labels,
                  "increments": draw(updates(hooks, labels, "counter"))}
        if map_name != "counters":
            family["map"] = map_name
        counters.append(family)
    for i in range(draw(st.integers(0, 2))):
        labels = draw(label_set(model.MAX_HISTOGRAM_COMBOS))
        histograms.append({"name": f"{name}_h{i}", "description": f"Histogram family {i}",
                           "unit": "nanoseconds", "labels": labels,
                           "records": draw(updates(hooks, labels, "histogram"))})
    used = {u["at"] for f in counters for u in f["increments"]}
    used |= {u["at"] for f in histograms for u in f["records"]}
    used |= {s["at"] for f in histograms for u in f["records"] for s in u.get("latency", {}).get("start", [])}
    unused = [h.tracepoint for h in hooks if h.tracepoint not in used]
    if unused or not (counters or histograms):
        counters.append({"name": f"{name}_events", "description": "Events",
                         "map": "rest" if "rest" not in map_slots else "rest2",
                         "increments": [h.tracepoint for h in hooks]})
    return {
        "group": "prop", "sampler": sampler, "description": f"Property-based sampler {sampler}",
        "attach": attach, "layout": layout, "tracepoints": events,
        "counters": counters, "histograms": histograms,
    }


# --------------------------------------------------------------------------
# hostile mutations of a valid spec


def _set(path: list, value):
    def apply(spec: dict) -> dict:
        import copy

        spec = copy.deepcopy(spec)
        node = spec
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return spec

    return apply


HOSTILE_VALUES = st.sampled_from([
    None, 0, -1, True, 3.5, [], {}, "", " ", "x" * 400, "../../etc", "a\x00b", "a\x1bb", "é",
    "sched:sched_process_fork; rm -rf /", "1; return 0", "bpf_send_signal(9)", "x = 1", "{}",
    "/* */", "#include", '"quoted"', "a\nb", "\u202e", 2**70, [1, [2]], {"a": {"b": None}},
])


@st.composite
def mutated(draw, spec: dict):
    """`spec` with one field replaced by something wrong, and where."""
    paths = [["group"], ["sampler"], ["description"], ["attach"], ["layout"], ["tracepoints"],
             ["tracepoints", 0], ["counters"], ["histograms"]]
    for i, family in enumerate(spec["counters"]):
        paths += [["counters", i], ["counters", i, "name"], ["counters", i, "labels"],
                  ["counters", i, "increments"]]
        for j, u in enumerate(family["increments"]):
            if isinstance(u, dict):
                paths += [["counters", i, "increments", j, k] for k in ("at", "by", "when", "index")]
    path = draw(st.sampled_from(paths))
    value = draw(HOSTILE_VALUES)
    return _set(path, value)(spec), path, value
