"""Defaults that follow earlier answers, so Enter at every prompt gives a
consistent, valid sampler: tracepoints that suit the attach style, a
description naming the events, one counter family counting each event.
Copier renders them through `copier_glue`; `rezolus-sampler new` calls them.
"""

from __future__ import annotations

import os

from rezolus_sampler.spec.names import MAX_DESCRIPTION_LEN

EVENTS = ("sched:sched_process_fork", "sched:sched_process_exec", "sched:sched_process_free")
ARG_NAMES = {"sched_process_fork": "(parent, child)", "sched_process_exec": "(task, old_pid, bprm)",
             "sched_process_free": "(task)"}  # fmt: skip


def tracepoints(attach: str | None) -> list[str]:
    """The fork/exec/free trio, with argument names where the attach style takes them."""
    if attach == "tracepoint":
        return list(EVENTS)
    return [t + ARG_NAMES[t.split(":")[1]] for t in EVENTS]


def events(tracepoints: list | None) -> list[str]:
    """The tracepoints' event names, less a prefix they all share (fork, exec, free)."""
    found = []
    for spec in tracepoints or []:
        if isinstance(spec, str) and ":" in spec:
            found.append(spec.split(":", 1)[1].split("(")[0].split("@")[0].strip())
    if len(found) > 1:
        common = os.path.commonprefix(found)
        common = common[: common.rfind("_") + 1]
        if common and all(e[len(common) :] for e in found):
            found = [e[len(common) :] for e in found]
    return found


def description(tracepoints: list | None) -> str:
    named = [e.replace("_", " ") for e in events(tracepoints)]
    if not named:
        return "Counts kernel events"
    listed = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    return f"Counts {listed} events"[:MAX_DESCRIPTION_LEN]


def counter_family(group: str | None, sampler: str | None, tracepoints: list | None) -> dict:
    """One family counting every tracepoint's events, labeled by event."""
    names = list(dict.fromkeys(events(tracepoints)))
    specs = [spec for spec in tracepoints or [] if isinstance(spec, str)]
    return {
        "name": f"{group or 'group'}_{sampler or 'sampler'}_events",
        "description": f"The number of {' / '.join(e.replace('_', ' ') for e in names) or 'kernel'} events",
        "unit": "events",
        "labels": {"event": names},
        "increments": [
            {"at": spec.split("(")[0], "labels": {"event": event}}
            for spec, event in zip(specs, names)
        ],
    }


def counters(group: str | None, sampler: str | None, tracepoints: list | None, histograms) -> list[dict]:
    """The counters default: none when histograms were given (then the answers
    already say what to measure), else one family counting each event."""
    if histograms:
        return []
    return [counter_family(group, sampler, tracepoints)]


def complete(answers: dict, year: int) -> dict:
    """`answers` with what Enter at each remaining prompt would give (Copier's
    --defaults): attach, layout, description, year, histograms and counters."""
    out = dict(answers)
    out.setdefault("attach", "tp_btf")
    out.setdefault("layout", "totals")
    out.setdefault("copyright_year", year)
    out.setdefault("histograms", [])
    if "tracepoints" not in out:
        out["tracepoints"] = tracepoints(out["attach"])
    if "description" not in out:
        out["description"] = description(out["tracepoints"])
    if "counters" not in out:
        out["counters"] = counters(out.get("group"), out.get("sampler"), out["tracepoints"], out["histograms"])
    return out
