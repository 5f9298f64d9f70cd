"""`rezolus-sampler`: the one command in front of the template's tools.

    rezolus-sampler new [--answers FILE]    create a sampler (guided, or from an answers file)
    rezolus-sampler tracepoints [PATTERN]   events, typed arguments, record fields
    rezolus-sampler prove SAMPLER_DIR ...   compile, load, attach, count, measure
    rezolus-sampler audit [TREE] ...        check samplers against principles.md (--measure: P14)
    rezolus-sampler remove SAMPLER          remove a generated sampler and its registration
    rezolus-sampler recover [ROOT]          finish rolling back an interrupted copy or removal

Each subcommand keeps its own options (`rezolus-sampler <command> --help`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable


def _prove(argv: list[str]) -> int:
    from rezolus_sampler.kernel import prove

    return prove.main(argv, prog="rezolus-sampler prove")


def _new(argv: list[str]) -> int:
    from rezolus_sampler import guide

    return guide.main(argv, prog="rezolus-sampler new")


def _tracepoints(argv: list[str]) -> int:
    from rezolus_sampler.spec import catalog

    return catalog.main(argv, prog="rezolus-sampler tracepoints")


def _audit(argv: list[str]) -> int:
    from rezolus_sampler.audit import report

    return report.main(argv, prog="rezolus-sampler audit")


def _remove(argv: list[str]) -> int:
    from rezolus_sampler.tree import remove

    return remove.main(argv, prog="rezolus-sampler remove")


def _recover(argv: list[str]) -> int:
    import argparse

    from rezolus_sampler.tree.journal import JOURNAL, recover

    ap = argparse.ArgumentParser(
        prog="rezolus-sampler recover",
        description=f"Roll back the operation a killed copy, update or removal left in "
        f"{JOURNAL} at the root of the tree.",
    )
    ap.add_argument("root", nargs="?", default=".", help="the Rezolus checkout (default: .)")
    root = ap.parse_args(argv).root
    note = recover(root)
    if note.startswith("rolled back"):
        print(f"rezolus-sampler: {note}")
        return 0
    if note:
        print(f"rezolus-sampler: {note}", file=sys.stderr)
        return 1
    print(f"rezolus-sampler: nothing to recover in {root}")
    return 0


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "new": (_new, "create a sampler: guided questions (or --answers FILE), then Copier renders it"),
    "tracepoints": (_tracepoints, "list tracepoints with their typed arguments and record fields"),
    "prove": (_prove, "compile, load, attach and measure a rendered sampler (root)"),
    "audit": (_audit, "check every BPF sampler of a Rezolus tree against principles.md"),
    "remove": (_remove, "remove a generated sampler and everything its registration added"),
    "recover": (_recover, "finish rolling back an interrupted copy, update or removal"),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: rezolus-sampler <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {what}" for name, (_, what) in COMMANDS.items()]
    lines += ["", "rezolus-sampler <command> --help shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"rezolus-sampler: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return COMMANDS[command][0](rest)


if __name__ == "__main__":
    sys.exit(main())
