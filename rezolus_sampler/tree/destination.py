"""Facts about the destination Copier renders into, for the preflight.

Copier renders into three places during `copier update`: the tree, and two
temporary copies (old and new template version) it diffs. They are told apart
explicitly, by Copier's operation and the names Copier gives those copies, not
by looking for a Rezolus tree; everywhere else the destination must be the root
of a Rezolus checkout.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from rezolus_sampler.tree.scan import sampler_dir


def operation(context) -> str | None:
    """Copier's operation: 'copy' or 'update' (`_copier_operation`; Copier 9 sets it
    in task contexts only, so at render time it is read from Copier's own context
    variable, which the nested copies of an update inherit); None when unknown."""
    named = context.get("_copier_operation")
    if named:
        return str(named)
    try:
        from copier._main import _operation as copier_operation
    except ImportError:  # pragma: no cover - Copier before 9.8 kept it in copier.main
        try:
            from copier.main import _operation as copier_operation
        except ImportError:
            return None
    return copier_operation.get(None)


_SCRATCH = re.compile(r"^copier\.(?:_main|main)\.(?:old|new)_copy\.")


def is_scratch_copy(context) -> bool:
    """One of the two temporary copies `copier update` renders (old and new template
    version) to compute the update's diff: the operation is 'update' and the
    destination is one of Copier's `copier._main.{old,new}_copy.*` directories."""
    if operation(context) not in ("update", None):
        return False
    conf = context.get("_copier_conf") or {}
    return any(_SCRATCH.match(part) for part in Path(str(conf.get("dst_path", ""))).parts)


def update_destination() -> Path | None:
    """The tree a `copier update` in progress updates, seen from its temporary copies.

    Copier renders those copies from inside `Worker._apply_update`, whose worker
    holds the real destination. Rendering them against the same tree (its
    vmlinux.h, its formatter configuration) as the render in the tree keeps
    the three renders alike, so the update's diff holds only what the answers
    or the template changed. None outside an update.
    """
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "_apply_update" and "copier" in frame.f_code.co_filename:
            worker = frame.f_locals.get("self")
            dst = getattr(worker, "dst_path", None)
            return Path(dst).absolute() if dst is not None else None
        frame = frame.f_back
    return None


def previous_answers(context, target: Path, answers: dict) -> str | None:
    """The sampler's answers file as it was registered: for an update the committed
    one (update needs a clean git tree, and its migrations may have rewritten the
    file on disk already), else the file on disk (--overwrite)."""
    path = sampler_dir(target, answers["group"], answers["sampler"]) / ".copier-answers.yml"
    if operation(context) == "update":
        try:
            shown = subprocess.run(
                ["git", "show", f"HEAD:./{path.relative_to(target)}"],
                cwd=target, capture_output=True, text=True, check=False,
            )
        except OSError:
            shown = None
        if shown is not None and shown.returncode == 0:
            return shown.stdout
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def description_of(answers_text: str | None) -> str | None:
    try:
        answers = yaml.safe_load(answers_text or "")
    except yaml.YAMLError:
        return None
    value = answers.get("description") if isinstance(answers, dict) else None
    return value if isinstance(value, str) else None


def rename_refusal(context, target: Path, answers: dict) -> str:
    """`copier update` keeps a sampler's name: the answers file it updates names it."""
    if operation(context) != "update":
        return ""
    conf = context.get("_copier_conf") or {}
    try:
        recorded = yaml.safe_load((target / str(conf["answers_file"])).read_text(encoding="utf-8"))
    except (KeyError, OSError, yaml.YAMLError):
        return ""
    if not isinstance(recorded, dict):
        return ""
    old = (recorded.get("group"), recorded.get("sampler"))
    if old == (answers["group"], answers["sampler"]) or None in old:
        return ""
    return (
        f"copier update cannot rename {old[0]}/{old[1]} to {answers['group']}/"
        f"{answers['sampler']}; remove it with 'rezolus-sampler remove {old[0]}/{old[1]}' "
        "and copy the sampler under its new name"
    )
