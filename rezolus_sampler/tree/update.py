"""The work behind `copier update`'s `_migrations` entries (hooks/update.py).

- `migrate`: before the new version renders, rewrite the sampler's answers
  file in that version's form (`rezolus_sampler.spec.migrations`).
- `check`: after Copier merged the update into the tree, find what it could
  not merge -- files holding conflict markers (`--conflict inline`, Copier's
  default, which exits 0 and says nothing) and `.rej` files (`--conflict
  rej`) -- and fail with a banner naming them and how to resolve them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import yaml

from rezolus_sampler.spec.migrations import MigrationError, migrate

# The labels Copier gives `git merge-file` for the two sides of a conflict.
MARKERS = (b"<<<<<<< before updating", b">>>>>>> after updating")


def migrate_file(path: Path, version: str) -> list[str]:
    """Rewrite the answers file at `path` in the form of `version`; the keys that changed."""
    text = path.read_text(encoding="utf-8")
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    answers = yaml.safe_load(text)
    migrated = migrate(answers, version)
    changed = sorted(
        key for key in set(answers) | set(migrated) if answers.get(key) != migrated.get(key)
    )
    if changed:
        body = yaml.safe_dump(migrated, sort_keys=False, allow_unicode=True)
        path.write_text(header + body, encoding="utf-8")
    return changed


def _git(root: Path, *args: str) -> list[str]:
    out = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=False
    ).stdout
    return [line for line in out.splitlines() if line]


def conflicts(root: Path) -> list[tuple[str, str]]:
    """(path, what) for every file the update left unmerged, relative to `root`."""
    found: dict[str, str] = {}
    for line in _git(root, "ls-files", "-u", "-z"):  # paths relative to `root`
        for entry in line.split("\0"):
            if "\t" in entry:
                found[entry.split("\t", 1)[1]] = "conflict markers"
    top = (_git(root, "rev-parse", "--show-toplevel") or [str(root)])[0]
    for line in _git(root, "status", "--porcelain", "--untracked-files=all", "--ignored", "--", "."):
        path = os.path.relpath(Path(top) / line[3:], root)  # porcelain: relative to the top
        if line[:2] in ("??", "!!") and path.endswith(".rej"):
            found[path] = "rejected hunks: apply them by hand, then delete the .rej file"
    for line in _git(root, "diff", "--name-only", "--relative"):
        try:
            lines = {raw.rstrip() for raw in (root / line).read_bytes().splitlines()}
        except OSError:
            continue
        if any(marker in lines for marker in MARKERS):
            found.setdefault(line, "conflict markers")
    return sorted(found.items())


def banner(found: list[tuple[str, str]]) -> str:
    width = max(len(path) for path, _ in found)
    lines = [
        f"rezolus-sampler: copier update could not merge {len(found)} file(s); "
        "the sampler will not build until they are resolved:",
        *(f"  {path.ljust(width)}  {what}" for path, what in found),
        "Resolve each file: keep the right lines between '<<<<<<< before updating' (yours) "
        "and '>>>>>>> after updating' (the template's), delete the markers, then "
        "'git add <file>'. Or undo the whole update: 'git reset --hard' and 'git clean -fd' "
        "on the sampler directory.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hooks/update.py")
    sub = ap.add_subparsers(dest="command", required=True)
    m = sub.add_parser("migrate", help="rewrite the answers file in a version's form")
    m.add_argument("--answers", required=True, help="the answers file (relative to --root)")
    m.add_argument("--version", required=True, help="the template version to migrate to")
    m.add_argument("--root", default=".")
    c = sub.add_parser("check", help="fail loudly when the update left conflicts")
    c.add_argument("--root", default=".")
    args = ap.parse_args(argv)
    root = Path(args.root)

    if args.command == "migrate":
        path = root / args.answers
        try:
            changed = migrate_file(path, args.version)
        except (OSError, yaml.YAMLError, MigrationError) as err:
            print(f"rezolus-sampler: cannot migrate {args.answers} to {args.version}: {err}",
                  file=sys.stderr)
            return 1
        except Exception as err:  # a migration's own bug: named, not a traceback
            print(f"rezolus-sampler: the migration to {args.version} failed on {args.answers}: "
                  f"{type(err).__name__}: {err}", file=sys.stderr)
            return 1
        what = f"changed {', '.join(changed)}" if changed else "already in that form"
        print(f"rezolus-sampler: answers {args.answers} migrated to {args.version} ({what})")
        return 0

    found = conflicts(root)
    if found:
        print(banner(found), file=sys.stderr)
        return 1
    return 0
