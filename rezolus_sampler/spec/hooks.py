"""Tracepoints: which kernel hook a sampler attaches to, and what it receives.

`parse_hook` turns an answer such as 'block:block_rq_complete(rq, error,
nr_bytes)' into a `Hook` with typed, named arguments (tp_btf/raw_tp, from
`btf_trace_<event>` in the target's vmlinux.h) or the event record
(classic tracepoints: `struct trace_event_raw_<event or class>`). The
running kernel's tracefs, where readable, says which category holds an
event, which class record a classic event uses, and whether its record has
the fields an expression reads.
"""

from __future__ import annotations

import difflib
import functools
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rezolus_sampler.spec import running
from rezolus_sampler.spec.ctype import CType
from rezolus_sampler.spec.names import C_IMPLICIT, NameError_, check_name
from rezolus_sampler.spec.vmlinux import TypeIndex, bundled_event_classes

ATTACH_STYLES = ("tp_btf", "raw_tp", "tracepoint")
TRACEPOINT = re.compile(
    r"^(?P<category>[a-z0-9_]+):(?P<event>[a-z0-9_]+)"
    r"(?:@(?P<struct>[a-z0-9_]+))?(?:\((?P<names>[^()]*)\))?$"
)
TRACEFS_EVENTS = Path(os.environ.get("REZOLUS_SAMPLER_TRACEFS", "/sys/kernel/tracing")) / "events"


class HookError(ValueError):
    """A tracepoint answer that cannot be used."""


@dataclass(frozen=True)
class Arg:
    name: str
    type: CType
    spelling: str  # as vmlinux.h spells the type, e.g. "struct sk_buff *"

    @property
    def decl(self) -> str:
        """A parameter declaration in Rezolus' pointer-left style."""
        if "(*)" in self.spelling:  # function pointer
            return self.spelling.replace("(*)", f"(*{self.name})", 1)
        base = re.sub(r"\s*\*", "*", self.spelling)
        array = re.search(r"\s*(\[\d*\])$", base)
        if array:
            return f"{base[: array.start()]} {self.name}{array.group(1)}"
        return f"{base} {self.name}"


@dataclass(frozen=True)
class Program:
    name: str
    section: str
    variant: str  # "btf", "raw" or "tracepoint"


@dataclass
class Hook:
    category: str
    event: str
    args: tuple[Arg, ...]
    raw_struct: str | None  # classic tracepoints: trace_event_raw_<raw_struct>
    programs: tuple[Program, ...] = ()
    notes: list[str] = field(default_factory=list)  # what the running kernel says, for the user

    @property
    def tracepoint(self) -> str:
        return f"{self.category}:{self.event}"

    @property
    def classic(self) -> bool:
        return self.raw_struct is not None

    @property
    def scope_args(self) -> tuple[tuple[str, CType], ...]:
        if self.classic:
            return (("args", CType(f"*s:trace_event_raw_{self.raw_struct}")),)
        return tuple((a.name, a.type) for a in self.args)


def suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


# --------------------------------------------------------------------------
# the running kernel (tracefs), where readable


def running_kernel_categories(event: str) -> list[str] | None:
    """Categories holding `event` in the running kernel's tracefs; None if unreadable."""
    found = _tracefs_events(TRACEFS_EVENTS)
    return None if found is None else sorted(found.get(event, ()))


@functools.lru_cache(maxsize=4)
def _tracefs_events(events: Path) -> dict[str, list[str]] | None:
    """event -> categories, read once per process (tracefs lists ~2,000 events)."""
    found: dict[str, list[str]] = {}
    try:
        for category in events.iterdir():
            if category.is_dir():
                for event in category.iterdir():
                    if event.is_dir():
                        found.setdefault(event.name, []).append(category.name)
    except OSError:
        return None
    return found or None


@dataclass(frozen=True)
class TracefsField:
    name: str
    offset: int
    size: int


def tracefs_fields(category: str, event: str) -> list[TracefsField] | None:
    """The running kernel's record of a classic event (common_* fields left out)."""
    try:
        text = (TRACEFS_EVENTS / category / event / "format").read_text()
    except OSError:
        return None
    found = []
    for decl, offset, size in re.findall(
        r"field:([^;]*);\s*offset:(\d+);\s*size:(\d+);", text
    ):
        name = re.search(r"(\w+)\s*(?:\[[^\]]*\])?\s*$", decl).group(1)
        if not name.startswith("common_"):
            found.append(TracefsField(name, int(offset), int(size)))
    return found


def class_from_fields(event: str, names: list[str], types: TypeIndex) -> str | None:
    """The event class whose record has these fields (or, failing that, begins them).

    Several records can share field names: structs named after another event
    are that event's own, and among the rest the one sharing the longest name
    prefix with the event wins (sched_process_free -> sched_process_template).
    Dynamic fields are `__data_loc_<name>` in BTF and `<name>` in tracefs.
    A newer kernel may append fields to an event's record (6.18's
    tcp_retransmit_skb adds `err` to class tcp_event_sk_skb): then the class
    whose fields are the longest prefix of the event's is the one meant.
    """
    exact, prefixes = [], []
    for record in types.raw_records:
        if record in types.tracepoints:
            continue
        fields = [m.name.removeprefix("__data_loc_") for m in types.raw_record(record) or ()]
        if fields == names:
            exact.append(record)
        elif fields and names[: len(fields)] == fields:
            prefixes.append((len(fields), record))
    if exact:
        matches = exact
    elif prefixes:
        longest = max(n for n, _ in prefixes)
        matches = [r for n, r in prefixes if n == longest]
    else:
        return None
    prefix = lambda k: len(os.path.commonprefix([k, event]))  # noqa: E731
    best = max(prefix(k) for k in matches)
    winners = [k for k in matches if prefix(k) == best]
    return winners[0] if len(winners) == 1 else None


def classic_struct(category: str, event: str, explicit: str | None, types: TypeIndex) -> str:
    """The record struct of a classic tracepoint: its own, the class recorded for it, or found."""
    if explicit:
        if types.raw_record(explicit) is None:
            raise HookError(
                f"{category}:{event}@{explicit}: vmlinux.h has no struct trace_event_raw_{explicit}"
                + suggest(explicit, types.raw_records)
            )
        return explicit
    if types.raw_record(event) is not None:
        return event
    known = bundled_event_classes().get(f"{category}:{event}")
    if known and types.raw_record(known) is not None:
        return known
    fields = tracefs_fields(category, event)
    if fields is not None:
        found = class_from_fields(event, [f.name for f in fields], types)
        if found:
            return found
    raise HookError(
        f"{category}:{event} is defined through an event class that could not be found "
        f"(vmlinux.h has no struct trace_event_raw_{event}, and the running kernel's record "
        f"matches no class record there); name the class struct as "
        f"'{category}:{event}@<class>' (see 'struct trace_event_raw_<class>' in vmlinux.h), "
        f"or use attach style tp_btf or raw_tp"
    )


def record_differences(hook: Hook, used: set[str]) -> list[str]:
    """Why reading `used` fields of a classic hook's record would fail on the running kernel.

    CO-RE relocates `args->field` by the record struct's name in the running
    kernel's BTF: the struct must exist there and put each field where the
    kernel writes it (tracefs' format). Not refused: the build host need not
    run the fleet's kernel; the user is told now instead of at load.
    """
    fields = tracefs_fields(hook.category, hook.event)
    if fields is None or hook.raw_struct is None or not running.readable():
        return []
    struct = f"trace_event_raw_{hook.raw_struct}"
    offsets = {f.name: f.offset for f in fields}
    found = running.members(f"s:{struct}")
    if found is None:
        own = f"trace_event_raw_{hook.event}"
        extra = f" (it has {own} instead)" if running.members(f"s:{own}") is not None else ""
        return [
            f"{hook.tracepoint}: the running kernel ({platform.release()}) has no struct {struct}"
            f"{extra}, so CO-RE relocation of args->{', args->'.join(sorted(used))} fails when "
            f"this program loads here; vmlinux.h is older or newer than this kernel"
        ]
    wrong = sorted(
        n for n in used
        if n not in found or offsets.get(n.removeprefix("__data_loc_")) != found[n].offset
    )
    if not wrong:
        return []
    return [
        f"{hook.tracepoint}: on the running kernel ({platform.release()}), field(s) "
        f"{', '.join(wrong)} of struct {struct} are not where this event's record keeps them "
        f"(tracefs format): the program would read the wrong bytes here"
    ]


# --------------------------------------------------------------------------
# parsing an answer

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


def default_arg_name(spelling: str, position: int, reserved: set[str]) -> str:
    m = re.search(r"struct (\w+) \*$", spelling)
    if m:
        name = _ARG_NAMES.get(m.group(1), m.group(1))
        try:
            check_name(name, "argument")
        except NameError_:
            name = ""
        if name and name not in reserved:
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


def parse_hook(spec: Any, attach: str, types: tuple[TypeIndex, TypeIndex], reserved: dict[str, str]) -> Hook:
    """One tracepoint answer -> Hook. `reserved`: identifiers an argument must not take."""
    x86, arm = types
    if not isinstance(spec, str):
        raise HookError(f"tracepoint {spec!r} must be a string like 'net:netif_receive_skb'")
    if len(spec) > 300:
        raise HookError(f"tracepoint {spec[:40]!r}... is {len(spec)} characters long")
    m = TRACEPOINT.match(spec.replace(" ", ""))
    if not m:
        raise HookError(
            f"tracepoint {spec!r} must look like 'category:event', optionally naming the "
            f"arguments: 'block:block_rq_complete(rq, error, nr_bytes)'"
        )
    category, event = m.group("category"), m.group("event")
    if event not in x86.tracepoints:
        close = difflib.get_close_matches(event, list(x86.tracepoints), n=3, cutoff=0.6)
        fix = f"did you mean {', '.join(close)}? " if close else ""
        raise HookError(
            f"{fix}unknown tracepoint {category}:{event} (vmlinux.h has no btf_trace_{event}; "
            f"rezolus-sampler tracepoints <pattern> lists them)"
        )
    if event not in arm.tracepoints:
        raise HookError(f"tracepoint {event} exists in the x86_64 vmlinux.h but not in aarch64's")
    located = running_kernel_categories(event)
    if located and category not in located:
        raise HookError(
            f"tracepoint {category}:{event}: the running kernel has {event} in category "
            f"{', '.join(located)}, not {category!r}"
        )
    names = [n for n in (m.group("names") or "").split(",") if n]
    if attach == "tracepoint":
        if names:
            raise HookError(
                f"{spec}: classic tracepoints take their record's fields (args->field); "
                f"argument names apply to tp_btf and raw_tp"
            )
        struct = classic_struct(category, event, m.group("struct"), x86)
        if arm.raw_record(struct) is None:
            raise HookError(f"{spec}: aarch64's vmlinux.h has no struct trace_event_raw_{struct}")
        return Hook(category, event, (), struct)
    if m.group("struct"):
        raise HookError(f"{spec}: '@struct' applies only to attach style 'tracepoint'")
    params = x86.tracepoints[event]
    if len(names) > len(params):
        shown = ", ".join(s for s, _ in params) or "none"
        raise HookError(
            f"{category}:{event} has {len(params)} arguments ({shown}); {len(names)} names were given"
        )
    # defaults avoid reserved names and the names this hook's functions will have
    avoid = set(reserved) | set(names) | {event, f"{event}_btf", f"{event}_raw", f"handle_{event}"}
    defaults = _unique([default_arg_name(s, i, avoid) for i, (s, _) in enumerate(params)])
    final = names + defaults[len(names) :]
    for name in final:
        try:
            check_name(name, f"argument name in {spec}")
        except NameError_ as err:
            raise HookError(str(err)) from None
        where = reserved.get(name) or ("generated C (BPF_PROG's context)" if name in C_IMPLICIT else None)
        if where:
            raise HookError(
                f"argument name {name!r} in {spec} is already defined by {where}; name the "
                f"arguments differently, e.g. '{category}:{event}({', '.join(a if a != name else name + '_arg' for a in final)})'"
            )
    if len(set(final)) != len(final):
        raise HookError(f"{spec}: argument names must be distinct, got {', '.join(final)}")
    args = tuple(Arg(n, t, s) for n, (s, t) in zip(final, params))
    return Hook(category, event, args, None)


def programs_for(hook: Hook, attach: str) -> tuple[Program, ...]:
    if attach == "tp_btf":
        return (
            Program(f"{hook.event}_btf", f"tp_btf/{hook.event}", "btf"),
            Program(f"{hook.event}_raw", f"raw_tp/{hook.event}", "raw"),
        )
    if attach == "raw_tp":
        return (Program(hook.event, f"raw_tp/{hook.event}", "raw"),)
    return (Program(hook.event, f"tracepoint/{hook.category}/{hook.event}", "tracepoint"),)
