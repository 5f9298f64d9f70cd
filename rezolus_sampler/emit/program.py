"""Each hook's one consolidated program, as lines of C.

For every hook this computes, once, what its program does per event:
1. the values its updates need, each in a local computed once (an index,
   an amount, a condition, a histogram value, a latency key). In tp_btf
   twins a value that reads kernel memory is computed in each twin
   program (direct read vs BPF_CORE_READ) and passed to the shared handler;
2. a computed slot goes through the map's `<map>_slot_add()`, which checks
   the slot against the bank width right before the access, on a register
   `barrier_var` makes opaque to clang: the verifier must see the bound on
   the register that indexes, and clang otherwise tests a copy, or computes
   `index * stride` before the range check (the verifier then refuses
   "unbounded memory access" / "max value is outside of the allowed range");
3. the CPU id and one bank lookup per counters map;
4. blocks of updates under their guards (a `when`, index ranges, a signed
   amount's sign): relaxed atomic adds into the bank, histogram bucket
   increments, latency stamps and reads.

Every line is laid out as Rezolus' clang-format would (100 columns): long
expressions are split into typed temporaries (same C types, so the same
values), never left for the formatter to break.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from rezolus_sampler.emit.layout import family_macro
from rezolus_sampler.emit.lines import COLUMNS, assign_call, c_call, comment, fill
from rezolus_sampler.spec import expr as E
from rezolus_sampler.spec.ctype import CType, c_integer_name
from rezolus_sampler.spec.hooks import Hook
from rezolus_sampler.spec.model import MAX_PROGRAM_MAPS, Sampler, SpecError, Update
from rezolus_sampler.spec.names import Namer

IND = "    "


@dataclass
class Local:
    """A value computed once per event: declaration lines per program variant."""

    name: str
    ctype: str
    expr: E.Expr
    passed: bool  # computed by each twin (and passed to the handler, unless a pointer temp)
    index: bool  # a label index
    pointer: bool = False  # a pointer read on the way to a value: stays in the twin
    lines: dict[str, list[str]] = field(default_factory=dict)  # variant -> declaration lines

    @property
    def param(self) -> str:
        return f"{self.ctype} {self.name}"


@dataclass
class Block:
    conditions: list[str]
    lines: list[str]  # final lines: indented twice under conditions, else once


@dataclass
class HookProgram:
    hook: Hook
    handler: str | None  # twins share `static __always_inline int handle_<event>()`
    locals: list[Local]
    preamble: list[str]  # after the locals: time, cpu id, bank lookups, early return
    blocks: list[Block]

    @property
    def passed(self) -> list[Local]:
        return [loc for loc in self.locals if loc.passed and not loc.pointer]

    @property
    def own(self) -> list[Local]:
        return [loc for loc in self.locals if not loc.passed]

    @property
    def handler_params(self) -> list[str]:
        return [loc.param for loc in self.passed] + [a.decl for a in self.hook.args]

    def handler_call(self) -> list[str]:
        return [loc.name for loc in self.passed] + [a.name for a in self.hook.args]

    def twin_lines(self, variant: str) -> list[str]:
        """What a twin program computes before calling the handler."""
        return [line for loc in self.locals if loc.passed for line in loc.lines[variant]]

    def body(self, variant: str) -> list[str]:
        """The lines of the handler (twins) or of the program itself, indented once."""
        lines = [line for loc in self.own for line in loc.lines[variant]]
        if self.handler is None:
            lines = [line for loc in self.locals for line in loc.lines[variant]]
        if lines and self.preamble and self.preamble[0]:
            lines.append("")
        lines += self.preamble
        for block in self.blocks:
            lines.append("")
            if block.conditions:
                lines += fill(f"{IND}if (", block.conditions, " &&", ") {").split("\n")
                lines += block.lines
                lines.append(f"{IND}}}")
            else:
                lines += block.lines
        return lines


# --------------------------------------------------------------------------
# values


def _c_type(t: CType) -> str:
    return c_integer_name(t) if t.is_integer else "bool"


def _split(name: str, ctype: str, tree: E.Node, variant: str, namer: Namer, base: str = "") -> list[str]:
    """`ctype name = tree;` as lines of at most 100 columns, splitting into typed temporaries."""
    text = E.print_c(tree, variant)
    line = f"{IND}{ctype} {name} = {text};"
    if len(line) <= COLUMNS:
        return [line]
    if isinstance(tree, (E.Member, E.Subscript, E.Name, E.Call)):
        return _long_read(name, ctype, tree, variant)  # one read: it cannot be split
    children = [c for c in E._children(tree) if c.const is None and not isinstance(c, E.Name)]
    parts = [c for c in children if not c.atomic] or children
    if not parts:
        return _long_read(name, ctype, tree, variant)
    part = max(parts, key=lambda c: len(E.print_c(c, variant)))
    base = base or name
    temp = namer.claim(f"{base}_part")
    if part.type.is_pointer:
        temp_type = _pointer_spelling(part.type)
    else:
        temp_type = "bool" if part.type.code == "b1" else c_integer_name(part.type)
    if temp_type is None:
        raise SpecError(f"{E.print_c(tree, 'tracepoint')} is too long to lay out", "expression")
    replaced = _replace(tree, part, E.Name(part.type, temp, boolean=part.boolean))
    return _split(temp, temp_type, part, variant, namer, base) + _split(
        name, ctype, replaced, variant, namer, base
    )


def _long_read(name: str, ctype: str, tree: E.Node, variant: str) -> list[str]:
    """A single read too long for one line, laid out as clang-format does: a macro call
    breaks after `=` or between its arguments; a NULL-checked tp_btf read becomes
    `T x = 0; if (p) { x = read; }`."""
    text = E.print_c(tree, variant)
    guarded = re.fullmatch(r"\((\w+) \? (.*) : 0\)", text)
    if guarded:
        pointer, read = guarded.groups()
        if "(" not in read and len(f"{IND * 2}{name} = {read};") > COLUMNS:
            read = E.print_c(tree, "raw")  # the same read through BPF_CORE_READ can break
        line = f"{IND * 2}{name} = {read};"
        inner = [line] if len(line) <= COLUMNS else _assign(f"{IND * 2}{name}", read, IND * 2)
        return [f"{IND}{ctype} {name} = 0;", f"{IND}if ({pointer}) {{", *inner, f"{IND}}}"]
    return _assign(f"{IND}{ctype} {name}", text, IND)


def _assign(prefix: str, value: str, indent: str) -> list[str]:
    call = re.fullmatch(r"(\w+)\((.*)\)", value)
    if call is None:
        # operands too long to share a line (long temporaries of a conditional, say):
        # left to the formatter pass of lines.formatted, which runs at render time
        return [f"{prefix} = {value};"]
    macro, inner = call.groups()
    args = [a.strip() for a in inner.split(",")]
    return assign_call(prefix, macro, args, indent).split("\n")


def _pointer_spelling(t: CType) -> str | None:
    """`struct sock*` for a pointer to a named struct/union (None: not spellable)."""
    if not t.is_pointer or not t.target.is_record or "@" in t.target.code:
        return None
    kind, name = t.target.code.split(":", 1)
    # const: the pointer may come from a const member; the reads through it only read
    return f"const {'struct' if kind == 's' else 'union'} {name}*"


def _rebuild(tree: E.Node, change) -> E.Node:
    """`tree` with `change` applied to each direct child."""
    kids = {f.name: change(getattr(tree, f.name)) for f in dataclasses.fields(tree)
            if isinstance(getattr(tree, f.name), E.Node)}
    return dataclasses.replace(tree, **kids) if kids else tree


def _replace(tree: E.Node, old: E.Node, new: E.Node) -> E.Node:
    if tree is old:
        return new
    return _rebuild(tree, lambda child: _replace(child, old, new))


class _Values:
    """The locals of one hook, deduplicated by what they compute."""

    def __init__(self, hook: Hook, twins: bool, variants: list[str], namer: Namer):
        self.hook = hook
        self.twins = twins
        self.variants = variants
        self.namer = namer
        self.locals: list[Local] = []
        self.by_key: dict[tuple, Local] = {}
        self.fields: dict[str, str] = {}  # classic: 'args->field' -> its local

    def record_fields(self, expr: E.Expr) -> E.Expr:
        """Classic tracepoints: every `args->field` read once, into a local of its type.

        The verifier refuses a load through a modified context pointer, and clang,
        seeing one field read twice (say in both arms of a `?:`), may compute
        `args + offset` once and load through it. One plain load per field avoids that."""
        if not self.hook.classic:
            return expr

        def swap(node: E.Node) -> E.Node:
            if isinstance(node, (E.Member, E.Subscript)):
                field = E.print_c(node, "tracepoint")
                name = self.fields.get(field)
                if name is None:
                    base = node.name if isinstance(node, E.Member) else f"{node.base.name}_{node.index}"
                    name = self.namer.claim(base)
                    loc = Local(name, _c_type(node.type), E.Expr(field, node, "value"), False, False)
                    loc.lines = {v: [f"{IND}{loc.ctype} {name} = {field};"] for v in self.variants}
                    self.locals.append(loc)
                    self.fields[field] = name
                return E.Name(node.type, name, boolean=node.boolean)
            return _rebuild(node, swap)

        return E.Expr(expr.source, swap(expr.tree), expr.role)

    def hoist_pointers(self, expr: E.Expr) -> tuple[E.Expr, list[Local]]:
        """Chains of several pointer hops that are long, or end in a bit-field, read
        their last pointer into a local first: `struct sock* sk = BPF_CORE_READ(skb,
        sk);` then `BPF_CORE_READ_BITFIELD_PROBED(sk, ...)` (the bit-field macro takes
        one pointer, not a nested read), and every line stays within 100 columns."""
        temps: list[Local] = []

        def swap(node: E.Node) -> E.Node:
            node = _rebuild(node, swap)
            if not isinstance(node, (E.Member, E.Subscript)) or E.hops(node) < 2:
                return node
            long = len(E.print_c(node, "btf")) > 60
            if not (long or (isinstance(node, E.Member) and node.bits is not None)):
                return node
            root, accesses = E._chain(node)
            last = max(i for i, a in enumerate(accesses) if isinstance(a, E.Member) and a.arrow)
            pointer = accesses[last - 1]  # the access that yields the last pointer
            spelled = _pointer_spelling(pointer.type)
            if spelled is None:
                return node
            base_expr = E.Expr(E.print_c(pointer, "tracepoint"), pointer, "value")
            key = ("ptr", E.print_c(pointer, "raw"))
            found = self.by_key.get(key)
            if found is None:
                name = self.namer.claim(pointer.name if isinstance(pointer, E.Member) else "ptr")
                inner, more = self.hoist_pointers(base_expr)
                temps.extend(more)
                found = Local(name, spelled, inner, passed=self.twins, index=False, pointer=True)
                for variant in self.variants:
                    found.lines[variant] = _split(name, spelled, inner.tree, variant, self.namer)
                self.by_key[key] = found
                temps.append(found)
            tree = E.Name(pointer.type, found.name, probed=True)
            for access in accesses[last:]:
                tree = dataclasses.replace(access, base=tree)
            return tree

        return E.Expr(expr.source, swap(expr.tree), expr.role), temps

    def local(self, expr: E.Expr, preferred: str, ctype: str | None = None, index: bool = False) -> str:
        expr = self.record_fields(expr)
        expr, temps = self.hoist_pointers(expr)
        for temp in temps:
            if temp not in self.locals:
                self.locals.append(temp)
        ctype = ctype or expr.local_type
        key = (ctype, E.print_c(expr.tree, "raw"), E.print_c(expr.tree, "btf"))
        found = self.by_key.get(key)
        if found is not None:
            found.index = found.index or index
            return found.name
        name = self.namer.claim(preferred)
        loc = Local(name, ctype, expr, passed=self.twins and expr.reads, index=index)
        for variant in self.variants:
            loc.lines[variant] = _split(name, ctype, expr.tree, variant, self.namer)
        self.locals.append(loc)
        self.by_key[key] = loc
        return name

    def value(self, expr: E.Expr, preferred: str) -> str:
        """An amount or value: an argument or constant as is, anything else in a local."""
        expr = self.record_fields(expr)
        tree = expr.tree
        if tree.const is not None:
            return E.print_c(tree, "raw")
        if isinstance(tree, E.Name) and not tree.type.signed:
            return tree.name
        return self.local(expr, preferred)


# --------------------------------------------------------------------------
# updates


def _label_terms(update: Update, values: _Values, guards: list[str]) -> tuple[int, list[str]]:
    """The fixed offset and computed terms of an update's slot within its family.

    Counter slots index memory (checked again at the access, `slot_add`);
    histogram label combinations only choose a map."""
    indexes_memory = update.family.kind == "counter"
    family = update.family
    strides = dict(zip((label.name for label in family.labels), family.strides()))
    offset, terms = 0, []
    for label in family.labels:
        stride = strides[label.name]
        if label.name in update.fixed:
            offset += label.values.index(update.fixed[label.name]) * stride
            continue
        e = update.index[label.name]
        if e.const is not None:  # a constant index (in range, or into the overflow value)
            v = e.const if 0 <= e.const < label.cardinality else label.values.index(label.overflow)
            offset += v * stride
            continue
        var = values.local(e, label.name, index=indexes_memory)
        if label.overflow is not None:
            over = label.values.index(label.overflow)
            # out-of-range indexes count into the declared overflow value
            term = f"({var} < {label.cardinality} ? {var} : {over})"
        else:
            guards.append(f"{var} < {label.cardinality}")
            term = var
        terms.append(term if stride == 1 else f"{term} * {stride}")
    return offset, terms


def _comment(update: Update) -> str:
    labels = [f"{k}={v}" for k, v in update.fixed.items()]
    labels += [f"{k}=<{k}>" for k in update.index]
    name = update.family.name
    return f"{name}{{{', '.join(labels)}}}" if labels else name


def _guards(update: Update, values: _Values) -> list[str]:
    guards = []
    if update.when is not None:
        guards.append(values.local(update.when, "cond"))
    return guards


def _counter_block(update: Update, values: _Values, names: dict[str, str]) -> Block:
    guards = _guards(update, values)
    offset, terms = _label_terms(update, values, guards)
    amount = "1"
    if update.by is not None:
        amount = values.value(update.by, update.by.base_name)
        if update.by.type.signed and update.by.const is None:
            guards.append(f"{amount} > 0")  # a signed amount adds only positive values
    slot_terms = [family_macro(update.family)] + ([str(offset)] if offset else []) + terms
    bank = names[f"bank:{update.family.map}"]
    idx = names["idx"]
    ind = IND if not guards else IND * 2
    lines = comment(_comment(update), ind).split("\n")
    lines += fill(f"{ind}{idx} = ", slot_terms, " +", ";").split("\n")
    if terms:  # a computed slot: bounds-checked at the access
        lines += c_call(ind, slot_add(update.family.map), [bank, idx, amount]).split("\n")
    else:
        lines += c_call(
            ind, "__atomic_fetch_add", [f"&{bank}->slot[{idx}]", amount, "__ATOMIC_RELAXED"]
        ).split("\n")
    return Block(guards, lines)


def slot_add(map_name: str) -> str:
    """The C helper that adds to a computed slot of `map_name`'s bank."""
    return f"{map_name}_slot_add"


def _histogram_lines(update: Update, values: _Values, maps, value: str, ind: str, guards: list[str], names) -> list[str]:
    """Record `value` into the map of this update's label combination."""
    offset, terms = _label_terms(update, values, [])
    lines = comment(_comment(update), ind).split("\n")
    by_slot = {hm.slot.index: hm for hm in maps}
    if not terms:
        lines += c_call(ind, names["histogram_add"], [f"&{by_slot[offset].name}", value]).split("\n")
        return lines
    combo = names["combo"]
    lines += fill(f"{ind}{combo} = ", ([str(offset)] if offset else []) + terms, " +", ";").split("\n")
    reachable = _reachable(update)
    for i, slot in enumerate(reachable):
        head = f"{ind}if (" if i == 0 else f"{ind}}} else if ("
        lines.append(f"{head}{combo} == {slot}) {{")
        lines += c_call(f"{ind}{IND}", names["histogram_add"], [f"&{by_slot[slot].name}", value]).split("\n")
    lines.append(f"{ind}}}")
    return lines


def _reachable(update: Update) -> list[int]:
    """The label combinations (map numbers) an update can reach."""
    import itertools

    family = update.family
    choices = []
    for label in family.labels:
        if label.name in update.fixed:
            choices.append([label.values.index(update.fixed[label.name])])
        elif update.index[label.name].const is not None:
            v = update.index[label.name].const
            choices.append([v if 0 <= v < label.cardinality else label.values.index(label.overflow)])
        else:
            choices.append(range(label.cardinality))
    strides = family.strides()
    return sorted({sum(c * s for c, s in zip(combo, strides)) for combo in itertools.product(*choices)})


def _histogram_block(update: Update, values: _Values, sampler: Sampler, names) -> tuple[Block, list[str]]:
    """The block recording this update, and lines that must precede it (a start-time lookup)."""
    group = next(g for g in sampler.histogram_maps if g.family is update.family)
    guards = _guards(update, values)
    pre: list[str] = []
    if update.latency is None:
        value = values.value(update.value, update.value.base_name)
    else:
        lat = update.latency
        key = values.local(lat.key, _key_name(lat.key), ctype="u32")
        start = values.namer.claim(f"{_stamp_short(sampler, update.family)}_at")
        pre = assign_call(
            f"{IND}u64* {start}", "bpf_map_lookup_elem", [f"&{lat.stamp_map}", f"&{key}"], IND
        ).split("\n")
        guards += [start, f"*{start}"]
        value = names["latency"]
    _label_terms(update, values, guards)  # its range guards join the `if`
    ind = IND * 2 if guards else IND
    lines = _histogram_lines(update, values, group.maps, value, ind, guards, names)
    if update.latency is not None:  # after the comment: read the start time, then clear it
        n = len(comment(_comment(update), ind).split("\n"))
        lines[n:n] = [f"{ind}u64 {value} = {names['now']} - *{start};", f"{ind}*{start} = 0;"]
    return Block(guards, lines), pre


def _stamp_short(sampler: Sampler, family) -> str:
    stamp = next(s for s in sampler.stamp_maps if s.family is family)
    return stamp.name.removesuffix("_start")


def _key_name(key: E.Expr) -> str:
    """`next->pid` -> next_pid; current_thread -> tid."""
    tree = key.tree
    if isinstance(tree, E.Call):
        return "tid" if tree.builtin.name == "current_thread" else tree.builtin.name
    if isinstance(tree, E.Member):
        root, _ = E._chain(tree)
        if isinstance(root, E.Name) and root.name != "args":
            return f"{root.name}_{tree.name}"
        return tree.name
    return "key"


def _stamp_blocks(sampler: Sampler, hook: Hook, values: _Values, names) -> list[Block]:
    """Start times stamped at this hook, after its own records (a hook may end one
    latency of a family and start another: sched_switch's next and prev)."""
    blocks = []
    for family in sampler.histograms:
        for update in family.updates:
            lat = update.latency
            if lat is None:
                continue
            for tracepoint, key_expr, when in lat.start:
                if tracepoint != hook.tracepoint:
                    continue
                guards = [values.local(when, "cond")] if when is not None else []
                key = values.local(key_expr, _key_name(key_expr), ctype="u32")
                at = values.namer.claim(f"{_stamp_short(sampler, family)}_at")
                ind = IND * 2 if guards else IND
                lines = comment(f"{family.name}: the start time of {key_expr.text}", ind).split("\n")
                lines += assign_call(
                    f"{ind}u64* {at}", "bpf_map_lookup_elem", [f"&{lat.stamp_map}", f"&{key}"], ind
                ).split("\n")
                lines += [f"{ind}if ({at}) {{", f"{ind}{IND}*{at} = {names['now']};", f"{ind}}}"]
                blocks.append(Block(guards, lines))
    return blocks


# --------------------------------------------------------------------------
# programs


def variants_for(attach: str) -> list[str]:
    return {"tp_btf": ["btf", "raw"], "raw_tp": ["raw"], "tracepoint": ["tracepoint"]}[attach]


def emit_hook(sampler: Sampler, hook: Hook, file_names: set[str]) -> HookProgram:
    namer = Namer(file_names | {a.name for a in hook.args} | ({"args"} if hook.classic else set()))
    values = _Values(hook, sampler.twins, variants_for(sampler.attach), namer)
    updates = [u for f in sampler.families for u in f.updates if u.hook is hook]
    counters = [u for u in updates if u.family.kind == "counter"]
    needs_now = any(u.latency for u in updates) or any(
        lat for f in sampler.histograms for u in f.updates if (lat := u.latency)
        for t, _, _ in lat.start if t == hook.tracepoint
    )
    names: dict[str, str] = {"histogram_add": "histogram_add"}
    if counters:
        names["cpu"] = namer.claim("cpu")
        names["idx"] = namer.claim("idx")
        for m in dict.fromkeys(u.family.map for u in counters):
            names[f"bank:{m}"] = namer.claim(f"{m}_bank")
    # `combo` picks a histogram's map at run time, so only a record with a computed
    # index needs it: a constant index (in range, or into the overflow value) is
    # folded into the map choice at render time like a fixed label, and an unused
    # `u64 combo;` fails Rezolus' -Wall -Werror build (-Wunused-variable).
    if any(
        u.family.kind == "histogram" and any(e.const is None for e in u.index.values())
        for u in updates
    ):
        names["combo"] = namer.claim("combo")
    if any(u.latency for u in updates):
        names["latency"] = namer.claim("latency")
    if needs_now:
        names["now"] = namer.claim("now")

    blocks: list[Block] = []
    hist_pre: list[str] = []
    for update in updates:
        if update.family.kind == "counter":
            blocks.append(_counter_block(update, values, names))
        else:
            block, pre = _histogram_block(update, values, sampler, names)
            hist_pre += pre
            blocks.append(block)
    blocks += _stamp_blocks(sampler, hook, values, names)
    # merge consecutive blocks under the same guard into one `if`
    merged: list[Block] = []
    for block in blocks:
        if merged and merged[-1].conditions == block.conditions:
            merged[-1].lines += block.lines
        else:
            merged.append(block)

    preamble: list[str] = []
    if needs_now:
        preamble.append(f"{IND}u64 {names['now']} = bpf_ktime_get_ns();")
    if counters:
        preamble.append(f"{IND}u32 {names['cpu']} = bpf_get_smp_processor_id();")
        for m in dict.fromkeys(u.family.map for u in counters):
            bank = names[f"bank:{m}"]
            preamble += assign_call(
                f"{IND}struct {m}_bank* {bank}", "bpf_map_lookup_elem", [f"&{m}", f"&{names['cpu']}"], IND
            ).split("\n")
        preamble.append(f"{IND}u64 {names['idx']};")
    if "combo" in names:
        preamble.append(f"{IND}u64 {names['combo']};")
    if counters:
        banks = [f"!{names[f'bank:{m}']}" for m in dict.fromkeys(u.family.map for u in counters)]
        preamble.append("")
        preamble += fill(f"{IND}if (", banks, " ||", ") {").split("\n")
        preamble += [f"{IND * 2}return 0;", f"{IND}}}"]
    if hist_pre:
        preamble += [""] + hist_pre
    handler = f"handle_{hook.event}" if sampler.twins else None
    # locals go first, in the order they were created
    return HookProgram(hook, handler, values.locals, preamble, merged)


def program_maps(sampler: Sampler, hook: Hook) -> list[str]:
    """The maps the program of `hook` references: the counters maps of its
    increments, the histogram maps its records can reach, and the start-time
    maps it stamps or reads."""
    used: dict[str, None] = {}
    for family in sampler.families:
        for update in family.updates:
            lat = update.latency
            if lat is not None and any(t == hook.tracepoint for t, _, _ in lat.start):
                used[lat.stamp_map] = None
            if update.hook is not hook:
                continue
            if family.kind == "counter":
                used[family.map] = None
                continue
            group = next(g for g in sampler.histogram_maps if g.family is family)
            by_slot = {hm.slot.index: hm.name for hm in group.maps}
            used.update(dict.fromkeys(by_slot[i] for i in _reachable(update)))
            if lat is not None:
                used[lat.stamp_map] = None
    return list(used)


def _check_program_maps(sampler: Sampler) -> None:
    """Refuse a hook whose one program would reference more maps than the verifier
    allows: the spec would render and compile, then fail to load."""
    for hook in sampler.hooks:
        maps = program_maps(sampler, hook)
        if len(maps) > MAX_PROGRAM_MAPS:
            raise SpecError(
                f"the program at {hook.tracepoint} would use {len(maps)} maps (each histogram "
                f"label combination is a map of its own); the kernel loads a BPF program with "
                f"at most {MAX_PROGRAM_MAPS}. Record fewer histogram label combinations at this "
                f"hook, or put counter families in fewer maps",
                "histograms" if sampler.histograms else "counters",
            )


def emit_hooks(sampler: Sampler, reserved_c: dict[str, str]) -> None:
    _check_program_maps(sampler)
    file_names = set(reserved_c)
    file_names |= {m.name for m in sampler.maps} | {m.width_macro for m in sampler.maps}
    file_names |= {family_macro(f) for f in sampler.counters}
    file_names |= {hm.name for g in sampler.histogram_maps for hm in g.maps}
    file_names |= {s.name for s in sampler.stamp_maps}
    file_names |= {p.name for p in sampler.programs} | {f"handle_{h.event}" for h in sampler.hooks}
    file_names |= {"MAX_CPUS", "MAX_PID", "histogram_add", "histogram_index"}
    file_names |= {slot_add(m.name) for m in sampler.maps}
    file_names -= set(E.BUILTINS)  # builtins are not C names: a local may be called `now`
    sampler.programs_by_hook = {
        hook.tracepoint: emit_hook(sampler, hook, file_names) for hook in sampler.hooks
    }
    used = "\n".join(line for p in sampler.programs_by_hook.values() for b in p.blocks for line in b.lines)
    for m in sampler.maps:
        m.slot_add = slot_add(m.name) if f"{slot_add(m.name)}(" in used else None
