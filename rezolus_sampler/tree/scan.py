"""Facts read from a Rezolus checkout: what it is and what it already attaches."""

from __future__ import annotations

import platform
import re
from pathlib import Path

from rezolus_sampler.paths import SAMPLERS, sampler_dir  # noqa: F401 (re-exported)
from rezolus_sampler.spec.hooks import running_kernel_categories
from rezolus_sampler.tree.register import is_rezolus_tree  # noqa: F401 (one definition, re-exported)

_SECTION = re.compile(r'SEC\("(?:tp_btf|raw_tp|tracepoint/\w+|kprobe|fentry|fexit)/(\w+)"\)')


def taken_sampler_name(root: Path, group: str, sampler: str) -> str:
    """"choose another name: …" when the sampler's directory exists, with what to do
    instead: refresh a generated sampler, extend a hand-written one; else ""."""
    directory = sampler_dir(root, group, sampler)
    if not directory.exists():
        return ""
    rel = directory.relative_to(root)
    if (directory / ".copier-answers.yml").exists():
        return (f"choose another name: {rel} exists (refresh it with "
                f"'copier update --trust -a {rel}/.copier-answers.yml')")
    return (f"choose another name: {rel} exists (hand-written; to count more at its hooks, "
            f"add to it instead: principle P3)")


def attached_hooks(root: Path) -> dict[str, list[str]]:
    """Kernel hook name -> samplers ('group_name') whose BPF programs attach to it."""
    found: dict[str, list[str]] = {}
    for source in sorted((Path(root) / SAMPLERS).glob("*/linux/*/mod.bpf.c")):
        name = f"{source.parent.parent.parent.name}_{source.parent.name}"
        for hook in set(_SECTION.findall(source.read_text(errors="replace"))):
            found.setdefault(hook, []).append(name)
    return found


def consolidation_warnings(root: Path, sampler) -> list[str]:
    """Hooks of `sampler` that another sampler in the tree already attaches (principle P3)."""
    attached = attached_hooks(root)
    warnings = []
    for hook in sampler.hooks:
        others = [s for s in attached.get(hook.event, []) if s != sampler.name]
        if others:
            warnings.append(
                f"{hook.tracepoint} is already attached by {', '.join(others)}: every program "
                f"on a hook pays the entry/exit cost again; consider adding these counters "
                f"to that sampler instead (principle P3)"
            )
    return warnings


_METRIC_NAME = re.compile(r'#\[metric\(\s*name = "([^"]+)"')


def declared_metrics(root: Path, exclude: Path | None = None) -> dict[str, str]:
    """Metric name -> sampler directory (relative) for every stats.rs in the tree."""
    found: dict[str, str] = {}
    base = Path(root) / SAMPLERS
    for stats in sorted(base.rglob("stats.rs")):
        if exclude is not None and stats.parent == exclude:
            continue
        for name in _METRIC_NAME.findall(stats.read_text(errors="replace")):
            if not name.startswith("rezolus_bpf_run_"):
                found.setdefault(name, str(stats.parent.relative_to(base)))
    return found


def metric_collisions(root: Path, sampler) -> list[str]:
    """Metric families of `sampler` that another sampler in the tree already declares."""
    own = sampler_dir(root, sampler.group, sampler.sampler)
    declared = declared_metrics(root, exclude=own)
    return [
        f"metric {name} is already declared by {declared[name]}; metric names identify one "
        f"sampler's family, choose another name (or replace that sampler with --overwrite)"
        for name in sampler.metric_names
        if name in declared
    ]


def missing_in_running_kernel(sampler) -> list[str]:
    """Hooks the running kernel does not have (vmlinux.h is older or newer than it).

    Not refused: the build host need not run the fleet's kernel. At run time
    Rezolus records a missing hook's attach failure and keeps the rest.
    """
    return [
        f"{hook.tracepoint} is in vmlinux.h but not in the running kernel ({platform.release()}); "
        f"its program will not attach here"
        for hook in sampler.hooks
        if running_kernel_categories(hook.event) == []
    ]
