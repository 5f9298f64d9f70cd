"""What a sampler can attach to, described for the people writing its answers.

Every tracepoint of the target's `vmlinux.h`, with the typed arguments a
tp_btf/raw_tp program receives (named as the model would name them when the
answer does not) and the record a classic tracepoint program reads
(`args->field`), the running kernel's view (is the event there), and the
samplers of a Rezolus tree that already attach it (principle P3). Used by
`rezolus-sampler tracepoints`, the help of the counters question and
`rezolus-sampler new`.
"""

from __future__ import annotations

import fnmatch
import textwrap
import platform
from dataclasses import dataclass
from pathlib import Path

from rezolus_sampler.spec.ctype import CType, c_integer_name
from rezolus_sampler.spec.hooks import (
    Arg,
    Hook,
    HookError,
    classic_struct,
    default_arg_name,
    record_differences,
    _unique,
    running_kernel_categories,
)
from rezolus_sampler.spec.vmlinux import Member, TypeIndex, bundled_categories
from rezolus_sampler.spec import vmlinux


def spell(t: CType) -> str:
    """A short C-like spelling of a type for a listing (typedef names are resolved)."""
    kind = t.kind
    if kind == "int":
        return c_integer_name(t)
    if kind == "enum":
        return f"enum ({t.size * 8}-bit)"
    if kind == "ptr":
        inner = t.target
        if inner.kind == "record":
            return f"{spell(inner)} *"
        return f"{spell(inner)}*" if inner.kind == "ptr" else f"{spell(inner)} *"
    if kind == "array":
        return f"{spell(t.target)}[{t.length or ''}]"
    if kind == "record":
        word, name = t.code.split(":", 1)
        return ("struct " if word == "s" else "union ") + ("{...}" if name.startswith("@") else name)
    return {"func": "function", "void": "void", "float": "float"}.get(kind, t.code)


def field_line(member: Member) -> str:
    """One record field as `args->name  type` with what is special about it."""
    name = member.name
    note = ""
    if name.startswith("__data_loc_"):
        note = "  (dynamic array: offset << 16 | length)"
    elif member.bits is not None:
        note = f"  (bit-field, {member.bits} bits)"
    return f"args->{name:<22} {spell(member.type)}{note}"


@dataclass(frozen=True)
class Event:
    category: str | None  # None: neither the running kernel nor the bundle knows it
    event: str
    args: tuple[Arg, ...]  # tp_btf/raw_tp arguments, with the names the model gives them
    record: str | None  # classic record: struct trace_event_raw_<record>
    fields: tuple[Member, ...]
    in_running_kernel: bool | None  # None: tracefs unreadable
    attached_by: tuple[str, ...]
    record_notes: tuple[str, ...] = ()  # the running kernel's record differs from vmlinux.h's

    @property
    def name(self) -> str:
        return f"{self.category or '?'}:{self.event}"

    @property
    def named_answer(self) -> str:
        """The tracepoint answer that names every argument."""
        return f"{self.name}({', '.join(a.name for a in self.args)})"

    def to_json(self) -> dict:
        return {
            "tracepoint": self.name,
            "arguments": [{"name": a.name, "type": a.spelling} for a in self.args],
            "record": f"trace_event_raw_{self.record}" if self.record else None,
            "fields": [{"name": m.name, "type": spell(m.type), "bits": m.bits} for m in self.fields],
            "in_running_kernel": self.in_running_kernel,
            "attached_by": list(self.attached_by),
            "record_notes": list(self.record_notes),
        }


def named_args(event: str, types: TypeIndex) -> tuple[Arg, ...]:
    params = types.tracepoints.get(event, ())
    names = _unique([default_arg_name(s, i, set()) for i, (s, _) in enumerate(params)])
    return tuple(Arg(n, t, s) for n, (s, t) in zip(names, params))


def category_of(event: str) -> tuple[str | None, bool | None]:
    """(category, in the running kernel) of an event: tracefs first, else the bundle."""
    located = running_kernel_categories(event)
    if located:
        return located[0], True
    return bundled_categories().get(event), (None if located is None else False)


def describe(event: str, types: TypeIndex, attached: dict[str, list[str]]) -> Event:
    category, running = category_of(event)
    record, fields = None, ()
    if category is not None:
        try:
            record = classic_struct(category, event, None, types)
        except HookError:
            record = None
    notes: list[str] = []
    if record is not None:
        fields = types.raw_record(record) or ()
        if running:
            hook = Hook(category, event, (), record)
            notes = record_differences(hook, {m.name for m in fields})
    return Event(
        category, event, named_args(event, types), record, tuple(fields), running,
        tuple(attached.get(event, ())), tuple(notes),
    )  # fmt: skip


def matches(pattern: str, name: str) -> bool:
    """A glob (any of * ? [) against 'category:event', else a substring of it."""
    pattern = pattern.lower()
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern) or fnmatchcase_event(pattern, name)
    return pattern in name


def fnmatchcase_event(pattern: str, name: str) -> bool:
    """A pattern without a category ('*retransmit*') also matches the event alone."""
    return ":" not in pattern and fnmatch.fnmatchcase(name.split(":", 1)[1], pattern)


def find(pattern: str, root: Path | None, attached: dict[str, list[str]] | None = None) -> list[Event]:
    types = vmlinux.index(root)
    attached = attached or {}
    found = []
    for event in sorted(types.tracepoints):
        category, _ = category_of(event)
        if matches(pattern, f"{category or '?'}:{event}"):
            found.append(describe(event, types, attached))
    return sorted(found, key=lambda e: e.name)


def names(root: Path | None) -> list[str]:
    """'category:event' of every tracepoint whose category is known (for completion)."""
    types = vmlinux.index(root)
    out = []
    for event in types.tracepoints:
        category, _ = category_of(event)
        if category:
            out.append(f"{category}:{event}")
    return sorted(out)


def marks(event: Event) -> list[str]:
    out = []
    if event.attached_by:
        out.append(
            f"already attached by {', '.join(event.attached_by)}: add counters there "
            f"rather than attach again (P3)"
        )
    if event.in_running_kernel is False:
        out.append(f"not in the running kernel ({platform.release()})")
    if event.category is None:
        out.append("category unknown: not in the running kernel's tracefs")
    return out + [f"classic: {note}" for note in event.record_notes]


def detail_lines(event: Event, attach: str | None = None) -> list[str]:
    """What an expression at this event can read, for the chosen attach style (or both)."""
    lines = [event.name]
    for mark in marks(event):
        lines += textwrap.wrap(mark, 96, initial_indent="  ! ", subsequent_indent="    ")
    if attach in (None, "tp_btf", "raw_tp"):
        if event.args:
            lines.append(f"  arguments (tp_btf, raw_tp): {event.named_answer}")
            lines += [f"    {a.decl}" for a in event.args]
        else:
            lines.append("  arguments (tp_btf, raw_tp): none")
    if attach in (None, "tracepoint"):
        if event.record:
            lines.append(f"  record (classic tracepoint): struct trace_event_raw_{event.record}")
            lines += [f"    {field_line(m)}" for m in event.fields] or ["    (no fields)"]
        else:
            lines.append("  record (classic tracepoint): not found in vmlinux.h")
    return lines


def one_line(event: Event) -> str:
    args = ", ".join(a.decl for a in event.args)
    flags = ""
    if event.attached_by:
        flags += f"  [attached by {', '.join(event.attached_by)}]"
    if event.in_running_kernel is False:
        flags += "  [not in running kernel]"
    return f"{event.name}({args}){flags}"


# --------------------------------------------------------------------------
# a chosen hook: what the counters question shows


def scope_lines(hook: Hook, types: TypeIndex) -> list[str]:
    """What expressions at a parsed hook can read."""
    if hook.classic:
        fields = types.raw_record(hook.raw_struct) or ()
        return [f"{hook.tracepoint}: record fields"] + [f"  {field_line(m)}" for m in fields]
    if not hook.args:
        return [f"{hook.tracepoint}: no arguments"]
    return [f"{hook.tracepoint}: arguments"] + [f"  {a.decl}" for a in hook.args]


def _integer_member(record: CType, types: TypeIndex) -> str | None:
    for member in (types.members(record) or {}).values():
        if member.type.kind == "int" and member.bits is None and not member.name.startswith("_"):
            return member.name
    return None


def example_expressions(hook: Hook, types: TypeIndex) -> list[str]:
    """A couple of expressions that are valid at `hook`, to show the syntax."""
    examples = []
    if hook.classic:
        fields = [m for m in types.raw_record(hook.raw_struct) or () if m.type.kind == "int" and m.bits is None]
        if fields:
            examples.append(f"when: args->{fields[0].name} != 0")
            examples.append(f"index: {{bucket: args->{fields[-1].name} & 7}}   # label bucket: 8")
        return examples
    for arg in hook.args:
        if arg.type.kind == "int" and not examples:
            examples.append(f"when: {arg.name} != 0")
        if arg.type.kind == "ptr" and arg.type.target.kind == "record":
            member = _integer_member(arg.type.target, types)
            if member:
                examples.append(f"index: {{bucket: {arg.name}->{member} & 7}}   # label bucket: 8")
                break
    return examples


# --------------------------------------------------------------------------
# rezolus-sampler tracepoints

DETAIL_LIMIT = 5  # more matches than this are listed one per line unless --details


def main(argv: list[str] | None = None, prog: str = "rezolus-sampler tracepoints") -> int:
    import argparse
    import json

    from rezolus_sampler.tree.scan import attached_hooks, is_rezolus_tree

    ap = argparse.ArgumentParser(
        prog=prog,
        description="List tracepoints with the typed arguments tp_btf/raw_tp programs receive "
        "and the record fields classic tracepoint programs read (args->field), from the "
        "target's vmlinux.h and the running kernel; marks events a sampler of the tree "
        "already attaches (P3) and events the running kernel lacks.",
    )
    ap.add_argument(
        "pattern", nargs="?", default="",
        help="substring of 'category:event', or a glob ('tcp:*', '*retransmit*'); all if omitted",
    )  # fmt: skip
    ap.add_argument("--tree", type=Path, default=None, help="the Rezolus checkout (default: . if it is one)")
    ap.add_argument("--attach", choices=("tp_btf", "raw_tp", "tracepoint"), help="show only what this attach style reads")
    ap.add_argument("--details", action="store_true", help=f"arguments and fields even for more than {DETAIL_LIMIT} matches")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    args = ap.parse_args(argv)
    root = args.tree
    if root is None and is_rezolus_tree(Path.cwd()):
        root = Path.cwd()
    if root is not None and not is_rezolus_tree(root):
        print(f"{prog}: {root} is not a Rezolus checkout (no src/agent/samplers)", file=__import__("sys").stderr)
        return 2
    found = find(args.pattern, root, attached_hooks(root) if root else {})
    if args.json:
        print(json.dumps([e.to_json() for e in found], indent=1))
        return 0 if found else 1
    source = f"vmlinux.h of {root}" if root else "the bundled vmlinux.h (run inside a Rezolus tree to use its own)"
    if not found:
        print(f"no tracepoint matches {args.pattern!r} in {source}")
        return 1
    print(f"{len(found)} tracepoint(s) matching {args.pattern!r}, from {source}:")
    if len(found) <= DETAIL_LIMIT or args.details:
        for event in found:
            print()
            print("\n".join(detail_lines(event, args.attach)))
        print()
        print("In an answer, name the arguments in order as shown (or your own names);")
        print("classic tracepoint expressions read the record as args->field.")
    else:
        for event in found:
            print(f"  {one_line(event)}")
        print(f"\n{len(found)} matches: narrow the pattern, or pass --details for record fields.")
    return 0
