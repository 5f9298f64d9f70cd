"""`rezolus-sampler remove`: take a generated sampler out of a Rezolus tree.

Removes the sampler's directory and everything its registration added (the
exact inverse, `register.plan_removal`): its `build.rs` SOURCES entry, `mod`
line, non-Linux stats block, `[samplers.<name>]` section in config/agent.toml
(with its comment and any keys set there), its names in context.rs and
golden.rs and all its METRIC_SAMPLERS rows. A group goes too (directory and
`mod <group>;`) only when it holds nothing but what registering this sampler
into a new group created; a group with anything else in it stays.

Only samplers this template generated (their directory has
`.copier-answers.yml`) are removed unless `--force`: a hand-written sampler may
carry registrations the inverse does not know about (docs, dashboards, other
samplers' helpers). Atomic like a copy (the rollback journal) and idempotent:
removing a sampler that is gone says so and changes nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

from rezolus_sampler.tree.journal import Journal, JournalError, recover
from rezolus_sampler.tree.register import (
    SAMPLERS_DIR,
    RegistrationError,
    Removal,
    is_rezolus_tree,
    plan_removal,
    tree_refusal,
    write_changes,
)

_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
_NAME = r"[a-z][a-z0-9_]*"


class RemoveError(Exception):
    """A removal refused or failed; the message is the one line the user sees."""


@contextmanager
def _held_signals(held: list[str]):
    """Hold SIGINT/SIGTERM/SIGHUP until the journal is committed or rolled back;
    the names of those that came are appended to `held` (and then dropped)."""
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    except (AttributeError, OSError):  # pragma: no cover - no POSIX signal masks
        yield
        return
    try:
        yield
    finally:
        for signum in sorted(signal.sigpending() & _SIGNALS):
            signal.sigwait({signum})
            held.append(signal.Signals(signum).name)
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def locate(target: str, root: str | None) -> tuple[Path, str, str]:
    """(tree root, group, sampler) from a sampler directory or `<group>/<sampler>`."""
    path = Path(target)
    parts = path.parts
    if len(parts) >= 3 and parts[-2] == "linux":
        group, sampler = parts[-3], parts[-1]
    elif re.fullmatch(rf"{_NAME}/{_NAME}", target.rstrip("/")):
        group, sampler = target.rstrip("/").split("/")
        path = None
    else:
        raise RemoveError(
            f"{target!r} is neither a sampler directory (src/agent/samplers/<group>/linux/"
            "<sampler>) nor <group>/<sampler>"
        )
    if root is not None:
        tree = Path(root).absolute()
    elif path is not None:
        absolute = path.absolute()
        tree = next((p for p in absolute.parents if is_rezolus_tree(p)), Path.cwd())
    else:
        tree = Path.cwd()
    refusal = tree_refusal(tree)
    if refusal:
        raise RemoveError(refusal)
    if path is not None and path.absolute() != tree / SAMPLERS_DIR / group / "linux" / sampler:
        raise RemoveError(
            f"{target} is not a sampler directory of {tree} "
            f"(expected {SAMPLERS_DIR}/{group}/linux/{sampler})"
        )
    return tree, group, sampler


def remove(root: Path, group: str, sampler: str, force: bool = False) -> tuple[Removal, list[str]]:
    """Remove `<group>/<sampler>` from the tree at `root`, all or nothing.

    Returns the removal done (empty when there was nothing to remove) and the
    signals held while writing. Raises RemoveError with the one line to show."""
    root = Path(root).absolute()
    note = recover(root)
    if note:
        print(f"rezolus-sampler: {note}", file=sys.stderr)
    directory = root / SAMPLERS_DIR / group / "linux" / sampler
    if directory.is_dir() and not (directory / ".copier-answers.yml").is_file() and not force:
        raise RemoveError(
            f"{directory.relative_to(root)} has no .copier-answers.yml: it was not generated "
            "by this template; pass --force to remove a hand-written sampler and the "
            "registrations a generated one has"
        )
    try:
        removal = plan_removal(root, group, sampler)
    except RegistrationError as err:
        raise RemoveError(str(err)) from None
    held: list[str] = []
    if not removal.changes and not removal.remove_dirs:
        return removal, held
    with _held_signals(held):
        try:
            journal = Journal.begin(root, "remove", removal.name, directory)
        except JournalError as err:
            raise RemoveError(str(err)) from None
        try:
            write_changes(journal, removal.changes)
            for d in removal.remove_dirs:
                journal.remove_dir(d)
        except (RegistrationError, JournalError, OSError) as err:
            reason = f"{err.strerror}: {err.filename}" if isinstance(err, OSError) else str(err)
            failed = journal.rollback()
            undone = (
                "nothing was changed"
                if not failed
                else f"rollback incomplete ({', '.join(failed)}); run 'rezolus-sampler recover {root}'"
            )
            raise RemoveError(f"removing {removal.name} failed: {reason}; {undone}") from None
        journal.commit()
    return removal, held


_TEXT = {".rs", ".toml", ".md", ".json", ".yml", ".yaml", ".c", ".h", ".html", ".js", ".py", ".sh"}


def mentions(root: Path, name: str, limit: int = 6) -> list[str]:
    """Text files of the tree that still name `name` (a hand-written sampler may be
    listed where a generated one never is: AMBIGUOUS_METRICS, docs, dashboards)."""
    word = re.compile(rf"\b{re.escape(name)}\b")
    found = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in (".git", "target", "node_modules"))
        for file in sorted(files):
            path = Path(directory) / file
            if path.suffix not in _TEXT or path.stat().st_size > 2_000_000:
                continue
            if word.search(path.read_text(encoding="utf-8", errors="replace")):
                found.append(str(path.relative_to(root)))
                if len(found) == limit:
                    return found + ["..."]
    return found


def main(argv: list[str] | None = None, prog: str = "rezolus-sampler remove") -> int:
    ap = argparse.ArgumentParser(
        prog=prog,
        description="Remove a generated sampler and everything its registration added "
        "(build.rs, module lists, config/agent.toml, the analysis lists).",
    )
    ap.add_argument(
        "sampler",
        help="the sampler directory (src/agent/samplers/<group>/linux/<sampler>) or <group>/<sampler>",
    )
    ap.add_argument("--root", help="the Rezolus checkout (default: found from the directory, else .)")
    ap.add_argument(
        "--force",
        action="store_true",
        help="also remove a sampler without .copier-answers.yml (hand-written)",
    )
    ap.add_argument("--dry-run", action="store_true", help="say what would change; write nothing")
    args = ap.parse_args(argv)
    try:
        root, group, sampler = locate(args.sampler, args.root)
        if args.dry_run:
            removal = plan_removal(root, group, sampler)
            files = [str(p.relative_to(root)) for p in removal.changes]
            dirs = [f"{d.relative_to(root)}/" for d in removal.remove_dirs]
            print(f"would remove {removal.name}: {', '.join(dirs + files) or 'nothing'}")
            return 0
        removal, held = remove(root, group, sampler, args.force)
    except (RemoveError, RegistrationError) as err:
        print(f"rezolus-sampler remove: {err}", file=sys.stderr)
        return 1
    if not removal.changes and not removal.remove_dirs:
        print(f"{group}_{sampler} is not in {root}: nothing to remove")
        return 0
    dirs = [f"{d.relative_to(root)}/" for d in removal.remove_dirs]
    files = [str(p.relative_to(root)) for p in removal.changes]
    late = f" ({', '.join(held)} held until it was complete)" if held else ""
    print(
        f"removed {removal.name}: deleted {', '.join(dirs) or 'no directory'}; "
        f"updated {', '.join(files) or 'no file'}{late}"
    )
    left = mentions(root, removal.name)
    if left:
        print(f"{removal.name} is still named in {', '.join(left)}: edit those by hand")
    return 0
