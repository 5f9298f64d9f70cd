"""Jinja globals that connect Copier to the sampler model.

Templates and `copier.yml` call these; they hold no logic of their own beyond
collecting answers from the render context and handing them to `model.build`.
- `sampler_check(step)`: a question's validator ('' when valid);
- `sampler_preflight()`: the first path Copier renders, before it writes
  anything: refuses invalid answers, the wrong destination and unconsented
  overwrites, then begins the rollback journal of the copy (`tree/guard.py`);
- `sampler_destination()`: 'tree', or 'scratch' for the temporary copies
  `copier update` renders (the registration task runs only in the tree);
- `sampler_model()`: the `model.Sampler` the templates lay out.
"""

from __future__ import annotations

import dataclasses
import datetime
import sys
from pathlib import Path

from jinja2 import pass_context
from jinja2.ext import Extension

from rezolus_sampler import prompting
from rezolus_sampler.spec import catalog, defaults, model
from rezolus_sampler.emit import histogram_c, lines
from rezolus_sampler.emit.layout import family_macro
from rezolus_sampler.emit.lines import (
    c_call,
    c_function,
    comment,
    fill,
    rust_chain,
    rust_call,
    rust_commented_items,
    rust_skeleton_include,
    rust_static,
    rust_str_array,
)
from rezolus_sampler.tree import destination, guard
from rezolus_sampler.tree.journal import JournalError, recover
from rezolus_sampler.tree.register import Registration, RegistrationError, plan, tree_refusal
from rezolus_sampler.tree.scan import (
    consolidation_warnings,
    is_rezolus_tree,
    missing_in_running_kernel,
    metric_collisions,
    sampler_dir,
    taken_sampler_name,
)

ANSWER_KEYS = model.ANSWER_KEYS

try:  # a clean one-line error in Copier's CLI instead of a traceback
    from copier.errors import UserMessageError as _Refusal
except ImportError:  # pragma: no cover - copier is always present when rendering
    _Refusal = ValueError


def _answers(context) -> dict:
    return {key: context.get(key) for key in ANSWER_KEYS if context.get(key) is not None}


def _target(context) -> Path | None:
    """The Rezolus tree whose headers and formatter settings a render uses: the
    destination, or for the temporary copies of `copier update` the tree being
    updated (so all three renders of an update agree); None outside a tree."""
    conf = context.get("_copier_conf") or {}
    dst = Path(str(conf["dst_path"])) if "dst_path" in conf else None
    if dst is not None and destination.is_scratch_copy(context):
        dst = destination.update_destination()
    return dst if dst is not None and is_rezolus_tree(dst) else None


# -- defaults that follow earlier answers (Copier renders a question's default
# as a template; the logic is in spec/defaults.py)


def _yaml(value) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=False, sort_keys=False).strip()


@pass_context
def default_tracepoints(context) -> str:
    return _yaml(defaults.tracepoints(context.get("attach")))


@pass_context
def default_description(context) -> str:
    return defaults.description(context.get("tracepoints"))


@pass_context
def default_counters(context) -> str:
    return _yaml(
        defaults.counters(
            context.get("group"), context.get("sampler"), context.get("tracepoints"),
            context.get("histograms"),
        )  # fmt: skip
    )


@pass_context
def hook_scopes(context) -> str:
    """For the help of the counters and histograms questions: what an expression
    at each chosen tracepoint can read, and examples valid there."""
    answers = _answers(context)
    target = _target(context)
    try:
        hooks = model.check_hooks(answers, target)
    except model.SpecError:
        return "Find arguments with: rezolus-sampler tracepoints <pattern>"
    types = model.type_indexes(target)[0]
    lines = ["Expressions can read (sizes: u32 = unsigned 32-bit, s32 = signed):"]
    for hook in hooks:
        lines += [f"  {line}" for line in catalog.scope_lines(hook, types)]
    examples = next((e for e in (catalog.example_expressions(h, types) for h in hooks) if e), [])
    if examples:
        lines.append("For example: " + examples[0])
        lines += [f"             {e}" for e in examples[1:]]
    return "\n".join(lines)


def _validating_default() -> bool:
    """Whether Copier is validating the default it is about to show, not a typed answer.

    Copier validates a question's default (`Question.get_default`) before it
    asks, and a refusal there is a traceback that ends the questionnaire: a
    default derived from earlier answers that the tree refuses, say. The
    default is shown instead; when it is submitted the prompt validates it,
    with the message. (A recorded answer that no longer fits during `copier
    update` is validated elsewhere and dropped by Copier: the derived default
    is shown in its place.)
    """
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "get_default" and "copier" in code.co_filename:
            return True
        frame = frame.f_back
    return False


def _prompting(context, step: str) -> bool:
    """Whether Copier is asking this question now (it raises a traceback, not a
    message, when a validator refuses an answer it did not prompt for: --defaults,
    -d/--data-file, recorded answers in `copier update`, the default it shows).
    Those answers are checked by `sampler_preflight` instead, which refuses with
    one message naming the field."""
    conf = context.get("_copier_conf") or {}
    if conf.get("defaults") or step in (conf.get("data") or {}):
        return False
    return not _validating_default()


@pass_context
def sampler_check(context, step: str) -> str:
    if not _prompting(context, step):
        return ""
    answers = _answers(context)
    try:
        if step in ("group", "sampler", "description"):
            model.check_identity({"group": "g", "sampler": "s", "description": "d"} | answers)
            if step == "sampler":
                refusal = _overwrite_refusal(context, answers, at_prompt=True)
                if refusal:
                    return refusal
        elif step == "copyright_year":
            model.check_year(answers.get("copyright_year"))
        elif step == "attach":
            model.check_attach(answers.get("attach"))
        elif step == "layout":
            model.check_layout(answers.get("layout"))
        elif step == "tracepoints":
            model.check_hooks(answers, _target(context))
        elif step == "histograms":
            model.check_histograms(answers, _target(context))
        else:  # counters, the last question: everything is answered
            model.build(answers, _target(context))
    except model.SpecError as err:
        return str(err)
    return ""


@pass_context
def sampler_destination(context) -> str:
    return "scratch" if destination.is_scratch_copy(context) else "tree"


def _overwrite_refusal(context, answers: dict, at_prompt: bool = False) -> str:
    """An existing sampler directory needs --overwrite (`copier update` always sets it)."""
    conf = context.get("_copier_conf") or {}
    if conf.get("overwrite"):
        return ""
    dst = Path(str(conf["dst_path"]))
    if at_prompt:  # the fix first: at the prompt, another name is the likely one
        return taken_sampler_name(dst, answers["group"], answers["sampler"])
    existing = sampler_dir(dst, answers["group"], answers["sampler"])
    if not existing.exists():
        return ""
    answers_file = existing / ".copier-answers.yml"
    update = f"copier update --trust -a {answers_file.relative_to(dst)}"
    how = f"refresh it with '{update}'" if answers_file.exists() else "choose another sampler name"
    return (
        f"{existing.relative_to(dst)} already exists; it is not overwritten without consent: "
        f"{how}, or pass --overwrite to replace it"
    )


def _registration_refusal(target: Path, sampler: model.Sampler, previous: str | None) -> str:
    """Dry-run the registration so a tree it cannot edit is refused before rendering."""
    try:
        plan(target, Registration.of(sampler), previous)
    except RegistrationError as err:
        return f"cannot register {sampler.name}: {err}"
    return ""


def _tree_checks(dst: Path) -> None:
    """The destination of a copy or update is the root of a Rezolus checkout; an
    operation killed there earlier is rolled back first."""
    refusal = tree_refusal(dst)
    if refusal:
        raise _Refusal(f"Refusing to render: {refusal}")
    note = recover(dst, own_is_stale=True)
    if note:
        print(f"rezolus-sampler: {note}", file=sys.stderr)


@pass_context
def sampler_preflight(context) -> str:
    """Refuse before anything is written; '' on success.

    The template's top directory is named `{{ sampler_preflight() }}src`, so
    this runs on the first path Copier renders, after all questions (including
    --defaults and recorded answers, which Copier does not validate) and
    before any file exists. Each Copier run has its own Jinja environment, so
    the verdict is kept there: later paths of the same run are not re-checked
    against files this run wrote.
    """
    answers = _answers(context)
    key = repr(sorted(answers.items()))
    done = context.environment.__dict__.setdefault("_sampler_preflight", set())
    if key in done:
        return ""
    conf = context.get("_copier_conf") or {}
    scratch = destination.is_scratch_copy(context)
    dst = Path(str(conf["dst_path"])).absolute()
    if not scratch:
        _tree_checks(dst)
    try:
        sampler = sampler_model(context)  # the model the templates will render
    except model.SpecError as err:
        field = f" ({err.field})" if err.field else ""
        raise _Refusal(f"Refusing to render{field}: {err}") from None
    refusal = _overwrite_refusal(context, answers)
    target = None if scratch else dst
    previous_text = destination.previous_answers(context, dst, answers) if target else None
    previous = destination.description_of(previous_text)
    if not refusal and target is not None:
        refusal = (
            destination.rename_refusal(context, target, answers)
            or "; ".join(metric_collisions(target, sampler))
            or _registration_refusal(target, sampler, previous)
        )
    if not refusal and target is not None and conf.get("skip_tasks"):
        refusal = (
            "--skip-tasks would leave the sampler unregistered; the registration task "
            "is part of the copy"
        )
    if refusal:
        raise _Refusal(f"Refusing to render: {refusal}")
    done.add(key)
    summary = ", ".join(f"map {m.name} ({m.n} slots, W={m.width})" for m in sampler.maps)
    print(
        f"{sampler.name}: {len(sampler.hooks)} tracepoint(s), "
        f"{len(sampler.programs)} program(s), {summary}",
        file=sys.stderr,
    )
    warnings = consolidation_warnings(target, sampler) if target else []
    for warning in warnings + missing_in_running_kernel(sampler) + sampler.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if target is not None and not conf.get("pretend"):
        try:
            guard.begin(
                target,
                destination.operation(context) or "copy",
                sampler.name,
                sampler_dir(target, sampler.group, sampler.sampler),
                dataclasses.asdict(Registration.of(sampler)),
                previous_text,
            )
        except JournalError as err:
            raise _Refusal(f"Refusing to render: {err}") from None
    return ""


_MODELS: dict[str, model.Sampler] = {}


@pass_context
def sampler_model(context) -> model.Sampler:
    answers = _answers(context)
    target = _target(context)
    key = repr((sorted(answers.items()), str(target)))
    if key not in _MODELS:
        _MODELS[key] = model.build(answers, target)
    return _MODELS[key]


def attach_summary(sampler: model.Sampler) -> str:
    return {
        "tp_btf": "`tp_btf` programs with `raw_tp` twins; `kernel_has_btf()` picks one at load "
        "time, so kernels without their own BTF fall back to `raw_tp`",
        "raw_tp": "`raw_tp` programs; no kernel BTF needed (arguments read with CO-RE "
        "`BPF_CORE_READ`)",
        "tracepoint": "classic `tracepoint` programs reading the event record; no kernel BTF "
        "needed, ranked below `raw_tp` on overhead",
    }[sampler.attach]


@pass_context
def c_formatted(context, text: str) -> str:
    return lines.formatted(text, "c", _target(context))


@pass_context
def rust_formatted(context, text: str) -> str:
    return lines.formatted(text, "rust", _target(context))


class SamplerExtension(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        prompting.install()  # whole refusals under the prompt, not cut at one row
        environment.filters.update(c_formatted=c_formatted, rust_formatted=rust_formatted)
        environment.globals.update(
            sampler_check=sampler_check,
            sampler_preflight=sampler_preflight,
            sampler_model=sampler_model,
            sampler_destination=sampler_destination,
            attach_summary=attach_summary,
            current_year=datetime.date.today().year,
            fill=fill,
            c_function=c_function,
            c_call=c_call,
            rust_chain=rust_chain,
            comment=comment,
            rust_str_array=rust_str_array,
            rust_skeleton_include=rust_skeleton_include,
            rust_static=rust_static,
            rust_call=rust_call,
            rust_commented_items=rust_commented_items,
            family_macro=family_macro,
            histogram_index_c=histogram_c.index_function,
            histogram_buckets=histogram_c.BUCKETS,
            default_tracepoints=default_tracepoints,
            default_description=default_description,
            default_counters=default_counters,
            hook_scopes=hook_scopes,
        )
