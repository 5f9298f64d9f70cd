"""`rezolus-sampler new`: a guided questionnaire for what Copier cannot loop over.

Copier asks a fixed list of questions, so families, labels and increments are
typed as YAML there. This front-end asks for them one at a time (questionary):
tracepoints with completion and their typed arguments shown, counter and
histogram families, labels as values or a cardinality, and at each hook a
fixed value or an expression, each validated by the model as it is typed.
Then it shows the layout (slots, maps, widths, memory) and, once confirmed,
renders through Copier's API with those answers: the sampler directory gets
Copier's ordinary `.copier-answers.yml`, so `copier update -a` works on it as
after a plain `copier copy`.

`rezolus-sampler new --answers FILE` skips the questions: it checks the file
and reports every problem (field path and message, exit 2), or renders it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path
from typing import Any, Callable

import yaml

from rezolus_sampler import prompting
from rezolus_sampler.spec import catalog, defaults, model
from rezolus_sampler.spec.names import NameError_, check_name, rust_module_reserved
from rezolus_sampler.spec.problems import problems
from rezolus_sampler.tree.scan import taken_sampler_name

LISTED_VALUES = 16  # more label values than this are typed, not listed in a menu
TYPED = "\0typed"
TEMPLATE = Path(__file__).resolve().parent.parent  # the template checkout this package belongs to


class Cancelled(Exception):
    """The user pressed Ctrl-C (or Ctrl-D): nothing has been written."""


def _ask(question) -> Any:
    try:
        answer = question.unsafe_ask()
    except (KeyboardInterrupt, EOFError):
        raise Cancelled from None
    if answer is None:
        raise Cancelled
    return answer


def _verdict(check: Callable[[], Any]) -> bool | str:
    """A questionary validator's answer: True, or the model's message."""
    try:
        check()
    except (model.SpecError, NameError_) as err:
        return str(err)
    return True


def _categorized(text: str) -> str:
    """'event' alone gets its category when the kernel or the bundle knows it."""
    text = text.strip()
    if text and ":" not in text:
        category, _ = catalog.category_of(text.split("(")[0])
        if category:
            return f"{category}:{text}"
    return text


# the last word of a metric name -> its unit (a unit names itself)
_UNITS = {"latency": "nanoseconds", "ns": "nanoseconds", "size": "bytes", "sizes": "bytes"} | {
    unit: unit
    for unit in ("bytes", "nanoseconds", "microseconds", "seconds", "packets", "events", "requests",
                 "operations", "pages", "calls", "syscalls", "signals", "tasks", "frames", "segments")
}


def _unit_from_name(name: str, fallback: str) -> str:
    """The unit a metric name ends with (`..._bytes`, `..._latency`), else `fallback`."""
    return _UNITS.get(name.rsplit("_", 1)[-1], fallback)


def _yaml_scalar(text: str) -> Any:
    """An expression or value as YAML would read it from an answers file."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


class Guide:
    def __init__(self, tree: Path, out=print):
        import questionary

        self.q = questionary
        self.tree = tree
        self.out = out
        self.types = model.type_indexes(tree)[0]
        self.answers: dict[str, Any] = {}
        self.overflow_asked: set[tuple[str, str]] = set()

    # -- the steps, in order

    def run(self) -> dict:
        prompting.install()
        self.identity()
        self.attach()
        self.tracepoints()
        self.description()
        self.counters()
        self.histograms()
        if not self.answers.get("counters") and not self.answers.get("histograms"):
            self.out("A sampler needs at least one counter or histogram family; add a counter family.")
            self.counters(force=True)
        if self.answers.get("counters"):
            self.layout()
        self.answers["copyright_year"] = datetime.date.today().year
        return self.answers

    def identity(self) -> None:
        modules = rust_module_reserved(self.tree, "")

        def group_ok(v: str):
            model.check_identity({"group": v, "sampler": "s", "description": "d"})
            where = modules["group"].get(v)
            if where:
                raise model.SpecError(f"choose another group: {v!r} would be a Rust module named like {where}")

        self.answers["group"] = _ask(self.q.text(
            "Group (snake_case; the sampler lives in src/agent/samplers/<group>/linux/<sampler>/):",
            validate=lambda v: _verdict(lambda: group_ok(v)),
        ))  # fmt: skip
        group = self.answers["group"]
        modules = rust_module_reserved(self.tree, group)

        def sampler_ok(v: str):
            model.check_identity({"group": group, "sampler": v, "description": "d"})
            where = modules["sampler"].get(v)
            if where:
                raise model.SpecError(f"choose another name: {v!r} would be a Rust module named like {where}")
            taken = taken_sampler_name(self.tree, group, v)
            if taken:
                raise model.SpecError(taken)

        self.answers["sampler"] = _ask(self.q.text(
            f"Sampler name within {group} (snake_case; Rezolus calls it {group}_<name>):",
            validate=lambda v: _verdict(lambda: sampler_ok(v)),
        ))  # fmt: skip

    def attach(self) -> None:
        Choice = self.q.Choice
        self.answers["attach"] = _ask(self.q.select(
            "How should the programs attach (principle P5)?",
            choices=[
                Choice("tp_btf with a raw_tp twin (recommended: typed arguments, falls back without BTF)", "tp_btf"),
                Choice("raw_tp only (no kernel BTF needed)", "raw_tp"),
                Choice("classic tracepoint (reads the event record, args->field)", "tracepoint"),
            ],
        ))  # fmt: skip

    def tracepoints(self) -> None:
        attach = self.answers["attach"]
        chosen: list[str] = []
        attached = {}
        from rezolus_sampler.tree.scan import attached_hooks

        attached = attached_hooks(self.tree)
        names = catalog.names(self.tree)
        while True:
            def tracepoint_ok(v: str):
                model.check_hooks({"attach": attach, "tracepoints": chosen + [_categorized(v)]}, self.tree)

            spec = _categorized(_ask(self.q.autocomplete(
                "Tracepoint (category:event; Tab completes, e.g. block:block_rq_complete):",
                choices=names, match_middle=True,
                validate=lambda v: _verdict(lambda: tracepoint_ok(v)),
            )))  # fmt: skip
            event = catalog.describe(spec.split(":", 1)[1].split("(")[0], self.types, attached)
            for line in catalog.detail_lines(event, "tracepoint" if attach == "tracepoint" else "tp_btf"):
                self.out(line)
            if attach != "tracepoint" and event.args and "(" not in spec:
                spec = self._argument_names(spec, event, chosen)
            chosen.append(spec)
            if not _ask(self.q.confirm("Add another tracepoint?", default=False)):
                break
        self.answers["tracepoints"] = chosen

    def _argument_names(self, spec: str, event: catalog.Event, chosen: list[str]) -> str:
        attach = self.answers["attach"]
        current = ", ".join(a.name for a in event.args)

        def names_ok(v: str):
            named = f"{spec}({v})" if v.strip() else spec
            model.check_hooks({"attach": attach, "tracepoints": chosen + [named]}, self.tree)

        given = _ask(self.q.text(
            "Argument names in order (Enter keeps them; expressions use these names):",
            default=current, validate=lambda v: _verdict(lambda: names_ok(v)),
        ))  # fmt: skip
        given = ", ".join(n.strip() for n in given.split(",") if n.strip())
        return f"{spec}({given})" if given and given != current else spec

    def description(self) -> None:
        self.answers["description"] = _ask(self.q.text(
            "One-line description (module doc, BPF header, config/agent.toml):",
            default=defaults.description(self.answers["tracepoints"]),
            validate=lambda v: _verdict(lambda: model.check_identity(
                {"group": "g", "sampler": "s", "description": v})),
        ))  # fmt: skip

    # -- hooks as the model parses them, for scopes and probes

    def _hooks(self) -> dict:
        hooks = model.check_hooks(self.answers, self.tree)
        return {hook.tracepoint: hook for hook in hooks}

    def _probe(self, kind: str, family: dict, update: dict | None = None) -> None:
        """Check a family (and one update of it) as the model will."""
        hooks = self._hooks()
        ctx = model._Context(hooks, model.type_indexes(self.tree), self.answers["attach"])
        key = "increments" if kind == "counter" else "records"
        spec = dict(family)
        spec[key] = spec.get(key) or [{"at": next(iter(hooks))}]  # a family needs one to parse
        parsed, _ = model.parse_family(spec, 0, kind)
        if update is not None:
            if kind == "histogram" and "value" not in update and "latency" not in update:
                update = update | {"value": 1}  # what it records is asked after the labels
            model.parse_update(update, parsed, ctx, 0)

    # -- families

    def counters(self, force: bool = False) -> None:
        families = self.answers.setdefault("counters", [])
        first = True
        while True:
            question = "Count events with a counter family?" if first else "Add another counter family?"
            if not force and not _ask(self.q.confirm(question, default=first)):
                break
            force = False
            families.append(self._family("counter", first and not families))
            first = False

    def histograms(self) -> None:
        families = self.answers.setdefault("histograms", [])
        question = "Add a histogram family (a distribution of sizes or latencies)?"
        while _ask(self.q.confirm(question, default=False)):
            families.append(self._family("histogram", False))
            question = "Add another histogram family?"

    def _taken_names(self) -> set[str]:
        from rezolus_sampler.tree.scan import declared_metrics

        own = [f["name"] for k in ("counters", "histograms") for f in self.answers.get(k) or []]
        return set(own) | set(declared_metrics(self.tree))

    def _family(self, kind: str, suggest_events: bool) -> dict:
        prefix = f"{self.answers['group']}_{self.answers['sampler']}"
        tracepoints = self.answers["tracepoints"]
        taken = self._taken_names()
        suggested = defaults.counter_family(self.answers["group"], self.answers["sampler"], tracepoints)

        def name_ok(v: str):
            check_name(v, "metric name", model.MAX_METRIC_LEN)
            if v in taken:
                raise model.SpecError(f"choose another name: metric {v} is already declared")

        noun = "counter" if kind == "counter" else "histogram"
        default_name = suggested["name"] if suggest_events else f"{prefix}_"
        if kind == "histogram":
            default_name = f"{prefix}_latency" if f"{prefix}_latency" not in taken else f"{prefix}_"
        family: dict[str, Any] = {"name": _ask(self.q.text(
            f"Metric name of the {noun} family:", default=default_name,
            validate=lambda v: _verdict(lambda: name_ok(v)),
        ))}  # fmt: skip
        family["description"] = _ask(self.q.text(
            "What it measures (one line):",
            default=suggested["description"] if suggest_events else "",
            validate=lambda v: _verdict(lambda: model.check_identity(
                {"group": "g", "sampler": "s", "description": v})),
        ))  # fmt: skip
        family["unit"] = _ask(self.q.text(
            "Unit (a word such as events, bytes, nanoseconds, packets):",
            default=_unit_from_name(family["name"], "events" if kind == "counter" else "nanoseconds"),
            validate=lambda v: _verdict(lambda: self._probe(kind, family | {"unit": v})),
        ))  # fmt: skip
        family["labels"] = {}
        hooks = self._hooks()
        by_event = False
        if suggest_events and len(hooks) > 1 and kind == "counter":
            events = suggested["labels"]["event"]
            by_event = _ask(self.q.confirm(
                f"Label the counts by tracepoint (label event, values {', '.join(events)})?", default=True))  # fmt: skip
            if by_event:
                family["labels"]["event"] = list(events)
        self._labels(kind, family)
        updates = []
        key = "increments" if kind == "counter" else "records"
        for position, (tracepoint, hook) in enumerate(hooks.items()):
            verb = "Count" if kind == "counter" else "Record"
            if not _ask(self.q.confirm(f"{verb} {family['name']} at {tracepoint}?", default=True)):
                continue
            fixed = {"event": suggested["labels"]["event"][position]} if by_event else {}
            updates.append(self._update(kind, family, tracepoint, hook, fixed))
        if not updates:
            self.out(f"{family['name']} must be updated somewhere; it is counted at every tracepoint.")
            updates = [{"at": t} for t in hooks]
        family[key] = updates
        return family

    def _labels(self, kind: str, family: dict) -> None:
        limit = model.MAX_FAMILY_SLOTS if kind == "counter" else model.MAX_HISTOGRAM_COMBOS
        while _ask(self.q.confirm(f"Add a label to {family['name']}?", default=False)):
            def name_ok(v: str):
                check_name(v, "label")
                if v in family["labels"]:
                    raise model.SpecError(f"{family['name']} already has a label {v}")
                self._probe(kind, family | {"labels": {**family["labels"], v: 1}})

            name = _ask(self.q.text("Label name (snake_case):", validate=lambda v: _verdict(lambda: name_ok(v))))

            def values_ok(v: str):
                self._probe(kind, family | {"labels": {**family["labels"], name: self._values(v)}})

            raw = _ask(self.q.text(
                f"Values of {name}, comma-separated (read, write), or a number N "
                f"for 0..N-1 (at most {limit} combinations):",
                validate=lambda v: _verdict(lambda: values_ok(v)),
            ))  # fmt: skip
            family["labels"][name] = self._values(raw)

    @staticmethod
    def _values(text: str) -> Any:
        text = text.strip()
        if text.isdigit():
            return int(text)
        return [v.strip() for v in text.split(",") if v.strip()] or None

    def _scope(self, hook) -> None:
        for line in catalog.scope_lines(hook, self.types):
            self.out(line)
        for example in catalog.example_expressions(hook, self.types):
            self.out(f"  e.g. {example}")

    def _update(self, kind: str, family: dict, tracepoint: str, hook, fixed: dict) -> dict:
        update: dict[str, Any] = {"at": tracepoint}
        shown = False
        labels = {k: v for k, v in family["labels"].items() if k not in fixed}
        if fixed:
            update["labels"] = dict(fixed)
        for name, spec in labels.items():
            values = spec.get("values") if isinstance(spec, dict) else spec
            values = [str(v) for v in values] if isinstance(values, list) else [str(i) for i in range(values)]
            Choice = self.q.Choice
            listed = values if len(values) <= LISTED_VALUES else []
            how = _ask(self.q.select(
                f"At {tracepoint}, {name} is:",
                choices=[Choice("computed: an expression of the arguments (an index 0.."
                                f"{len(values) - 1})", "")]
                + [Choice(f"always {v}", v) for v in listed]
                + ([Choice(f"always one of its {len(values)} values (typed next)", TYPED)] if not listed else []),
            ))  # fmt: skip
            if how == TYPED:
                how = _ask(self.q.text(
                    f"Value of {name} at {tracepoint}:",
                    validate=lambda v: True if v.strip() in values else f"one of {', '.join(values[:8])}, ...",
                )).strip()  # fmt: skip
            if how:
                update.setdefault("labels", {})[name] = how
                continue
            if not shown:
                self._scope(hook)
                shown = True

            def index_ok(v: str):
                probe = update | {"index": {**update.get("index", {}), name: _yaml_scalar(v)}}
                self._probe(kind, family, self._complete(probe, family))

            expression = _ask(self.q.text(
                f"Index of {name} at {tracepoint} (an expression, 0..{len(values) - 1}):",
                validate=lambda v: _verdict(lambda: index_ok(v)),
            ))  # fmt: skip
            update.setdefault("index", {})[name] = _yaml_scalar(expression)
            self._overflow(family, name, values)
        if not shown:
            self._scope(hook)
        if kind == "histogram":
            self._recorded(family, tracepoint, update)
        for key, question in (
            ("when", "Only when (a condition; Enter for always):"),
            ("by" if kind == "counter" else None, "Add how much (an expression; Enter for 1):"),
        ):
            if key is None:
                continue
            answer = _ask(self.q.text(
                question,
                validate=lambda v, key=key: True if not v.strip() else _verdict(lambda: self._probe(
                    kind, family, self._complete(update | {key: _yaml_scalar(v)}, family))),
            ))  # fmt: skip
            if answer.strip():
                update[key] = _yaml_scalar(answer)
        return update

    @staticmethod
    def _complete(update: dict, family: dict) -> dict:
        """A probe gives every label not chosen yet its first value, so only what
        was just typed is judged."""
        labels = dict(update.get("labels", {}))
        index = dict(update.get("index", {}))
        for name, spec in family["labels"].items():
            if name not in labels and name not in index:
                values = spec.get("values") if isinstance(spec, dict) else spec
                labels[name] = str(values[0]) if isinstance(values, list) else "0"
        out = {k: v for k, v in update.items() if k not in ("labels", "index")}
        if labels:
            out["labels"] = labels
        if index:
            out["index"] = index
        return out

    def _overflow(self, family: dict, name: str, values: list[str]) -> None:
        if (family["name"], name) in self.overflow_asked:
            return  # a label has one overflow rule, asked at its first computed index
        self.overflow_asked.add((family["name"], name))
        spec = family["labels"][name]
        Choice = self.q.Choice
        overflow = _ask(self.q.select(
            f"An index of {name} outside 0..{len(values) - 1}:",
            choices=[Choice("is dropped (not counted)", "")]
            + [Choice(f"counts as {v}", v) for v in (values if len(values) <= LISTED_VALUES else values[-1:])],
        ))  # fmt: skip
        if overflow:
            family["labels"][name] = {"values": spec, "overflow": overflow}

    def _recorded(self, family: dict, tracepoint: str, update: dict) -> None:
        others = [t for t in self.answers["tracepoints"] if not t.startswith(tracepoint)]
        Choice = self.q.Choice
        choices = [Choice("a value: an expression such as a size", "value")]
        if others:
            choices.append(Choice("the time since another tracepoint, per thread (latency)", "latency"))
        what = _ask(self.q.select(f"At {tracepoint}, {family['name']} records:", choices=choices))
        if what == "latency":
            starts = [t.split("(")[0] for t in others]
            update["latency"] = {"start": _ask(self.q.select("Measured from (the start tracepoint):", choices=starts))}
            return
        update["value"] = _yaml_scalar(_ask(self.q.text(
            "Value (an expression, e.g. a size):",
            validate=lambda v: _verdict(lambda: self._probe(
                "histogram", family, self._complete(update | {"value": _yaml_scalar(v)}, family))),
        )))  # fmt: skip

    def layout(self) -> None:
        Choice = self.q.Choice
        self.answers["layout"] = _ask(self.q.select(
            "How are counters read?",
            choices=[
                Choice("totals: one LazyCounter per label combination", "totals"),
                Choice("per_cpu: one CounterGroup per combination, a value per CPU", "per_cpu"),
            ],
        ))  # fmt: skip


# --------------------------------------------------------------------------
# rendering


def render(answers: dict, tree: Path, template: Path, vcs_ref: str | None) -> int:
    """Copier's API with these answers: what `copier copy --defaults --data-file` does."""
    import warnings

    import copier
    from copier.errors import CopierError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Copier's warning about a dirty template checkout
            copier.run_copy(
                str(template), str(tree), data=answers, defaults=True, unsafe=True, vcs_ref=vcs_ref,
            )  # fmt: skip
    except CopierError as err:
        print(f"rezolus-sampler new: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - the registration task failed: its output said why
        if type(err).__name__ == "TaskError":
            print("rezolus-sampler new: registration failed; the copy was rolled back", file=sys.stderr)
            return 1
        raise
    return 0


def load_answers(path: Path) -> tuple[Any, str]:
    """The answers file's content, or '' and why it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return None, f"cannot read {path}: {err}"
    problem = prompting.yaml_problem(text)
    if problem:
        return None, f"{path}: {problem}"
    return yaml.safe_load(text), ""


def main(argv: list[str] | None = None, prog: str = "rezolus-sampler new") -> int:
    from rezolus_sampler.tree.scan import is_rezolus_tree

    ap = argparse.ArgumentParser(
        prog=prog,
        description="Create a sampler: a guided questionnaire (or --answers FILE), the "
        "layout shown before anything is written, then Copier renders and registers it.",
    )
    ap.add_argument("--tree", type=Path, default=Path("."), help="the Rezolus checkout (default: .)")
    ap.add_argument("--answers", type=Path, help="render this answers file (YAML) without questions")
    ap.add_argument("--check", action="store_true", help="with --answers: report problems, write nothing")
    ap.add_argument("--save", type=Path, help="also write the answers to this file (for --answers later)")
    ap.add_argument("--yes", action="store_true", help="render without asking for confirmation")
    ap.add_argument(
        "--template", type=Path, default=Path(os.environ.get("REZOLUS_SAMPLER_TEMPLATE") or TEMPLATE),
        help="the template (default: $REZOLUS_SAMPLER_TEMPLATE, else the checkout of this package)",
    )
    ap.add_argument("--vcs-ref", default="HEAD", help="template version to render (default: HEAD)")
    args = ap.parse_args(argv)
    tree = args.tree.absolute()
    if not is_rezolus_tree(tree):
        print(f"{prog}: {tree} is not the root of a Rezolus checkout (no src/agent/samplers); "
              f"run it there or pass --tree", file=sys.stderr)  # fmt: skip
        return 2
    if args.answers is not None:
        answers, why = load_answers(args.answers)
        if why:
            print(f"{prog}: {why}", file=sys.stderr)
            return 2
        if isinstance(answers, dict):  # what Copier's --defaults fills in
            answers = defaults.complete(answers, datetime.date.today().year)
        found = problems(answers, tree)
        if found:
            print(f"{prog}: {args.answers}: {len(found)} problem(s), nothing written:", file=sys.stderr)
            for problem in found:
                print(f"  {problem}", file=sys.stderr)
            return 2
    else:
        if args.check:
            print(f"{prog}: --check needs --answers FILE", file=sys.stderr)
            return 2
        if not sys.stdin.isatty():
            print(f"{prog}: the questionnaire needs a terminal; pass --answers FILE", file=sys.stderr)
            return 2
        try:
            answers = Guide(tree).run()
        except Cancelled:
            print("Cancelled; nothing was written.", file=sys.stderr)
            return 130
    sampler = model.build(answers, tree)
    from rezolus_sampler.emit.layout import summary_lines
    from rezolus_sampler.tree.scan import consolidation_warnings

    print()
    print("\n".join(summary_lines(sampler)))
    for warning in consolidation_warnings(tree, sampler) + sampler.warnings:
        print(f"warning: {warning}")
    if args.check:
        print(f"{args.answers}: no problems; nothing written (--check)")
        return 0
    if args.save:
        args.save.write_text(yaml.safe_dump(answers, sort_keys=False), encoding="utf-8")
        print(f"answers saved to {args.save}")
    if args.answers is None and not args.yes:
        import questionary

        try:
            go = _ask(questionary.confirm(f"Write {sampler.name} into {tree}?", default=True))
        except Cancelled:
            go = False
        if not go:
            print("Nothing was written.")
            return 1
    return render(answers, tree, args.template, args.vcs_ref)
