"""Every problem of an answers file in one pass, each at its field path.

`model.build` stops at the first problem, which suits a prompt (one question
at a time). A file written by hand or by a coding assistant deserves the
whole list: `problems(answers, tree)` checks each part the model can check
on its own (identity, year, attach style, layout, each tracepoint, each
family, each increment or record) and names where each problem is, e.g.
`counters[0].increments[1]`. Only when the parts are sound does it run the
whole-sampler checks (unused tracepoints, generated names), whose first
problem it reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rezolus_sampler.spec import model
from rezolus_sampler.spec.model import SpecError


@dataclass(frozen=True)
class Problem:
    path: str  # where in the answers: 'tracepoints[1]', 'counters[0].increments[2]'
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class _Collector:
    def __init__(self) -> None:
        self.found: list[Problem] = []

    def check(self, path: str, check, *args):
        """Run one check; a refusal becomes a problem at `path` (None is returned)."""
        try:
            return check(*args)
        except SpecError as err:
            self.found.append(Problem(path, str(err)))
            return None


def problems(answers: Any, rezolus_root: Path | None = None) -> list[Problem]:
    if not isinstance(answers, dict):
        return [Problem("answers", f"must be a mapping of question: answer, not {type(answers).__name__}")]
    out = _Collector()
    unknown = sorted(str(k) for k in answers if k not in model.ANSWER_KEYS and not str(k).startswith("_"))
    for key in unknown:
        out.found.append(Problem(key, f"is not a question of this template (questions: {', '.join(model.ANSWER_KEYS)})"))
    for key in ("group", "sampler", "description"):
        probe = {"group": "g", "sampler": "s", "description": "d", key: answers.get(key)}
        out.check(key, model.check_identity, probe)
    if not any(p.path in ("group", "sampler") for p in out.found):
        out.check("sampler", model.check_identity, {"description": "d"} | answers)
    if answers.get("copyright_year") is not None:
        out.check("copyright_year", model.check_year, answers["copyright_year"])
    attach = out.check("attach", model.check_attach, answers.get("attach", "tp_btf"))
    out.check("layout", model.check_layout, answers.get("layout", "totals"))
    parsed = _hooks(out, answers, attach, rezolus_root) if attach else None
    if parsed is not None and parsed[0]:
        _families(out, answers, *parsed, attach, rezolus_root)
    if not out.found:
        out.check("answers", model.build, answers, rezolus_root)
    return out.found


def _hooks(out: _Collector, answers: dict, attach: str, root: Path | None):
    """Each tracepoint checked alone, then the list (duplicates): the hooks that
    parsed, and the events of those that did not (their updates are not judged)."""
    tracepoints = answers.get("tracepoints")
    if not isinstance(tracepoints, list):
        out.check("tracepoints", model.check_hooks, {"attach": attach, "tracepoints": tracepoints}, root)
        return None
    hooks, failed = {}, set()
    for i, spec in enumerate(tracepoints):
        found = out.check(f"tracepoints[{i}]", model.check_hooks, {"attach": attach, "tracepoints": [spec]}, root)
        if found is None:
            failed.add(_event(spec))
        else:
            hooks[found[0].tracepoint] = found[0]
    if not failed and out.check("tracepoints", model.check_hooks, {"attach": attach, "tracepoints": tracepoints}, root) is None:
        return None
    return hooks, failed


def _event(spec: Any) -> str:
    """The event an answer names ('cat:event(args)' -> 'event'), however malformed."""
    text = str(spec or "").replace(" ", "")
    return text.split(":", 1)[-1].split("(")[0].split("@")[0]


def _families(out: _Collector, answers: dict, hooks: dict, failed: set, attach: str, root: Path | None) -> None:
    ctx = model._Context(hooks, model.type_indexes(root), attach)
    names: set[str] = set()
    for key, kind, updates_key in (("counters", "counter", "increments"), ("histograms", "histogram", "records")):
        specs = answers.get(key)
        if specs is None:
            continue
        if not isinstance(specs, list):
            out.found.append(Problem(key, f"must be a list of families, not {type(specs).__name__}"))
            continue
        for i, spec in enumerate(specs):
            parsed = out.check(f"{key}[{i}]", model.parse_family, spec, i, kind)
            if parsed is None:
                continue
            family, update_specs = parsed
            if family.name in names:
                out.found.append(Problem(f"{key}[{i}].name", f"metric {family.name} is declared twice"))
            names.add(family.name)
            for j, update in enumerate(update_specs):
                at = update.get("at") if isinstance(update, dict) else update
                if _event(at) in failed:
                    continue  # its tracepoint's problem is already reported
                out.check(f"{key}[{i}].{updates_key}[{j}]", model.parse_update, update, family, ctx, j)
