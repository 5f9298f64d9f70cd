"""`rezolus-sampler`: the one command in front of the template's tools.

    rezolus-sampler prove SAMPLER_DIR ...   compile, load, attach, count, measure
    rezolus-sampler audit [TREE] ...        check samplers against principles.md (--measure: P14)

Each subcommand keeps its own options (`rezolus-sampler <command> --help`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable


def _prove(argv: list[str]) -> int:
    from rezolus_sampler.kernel import prove

    return prove.main(argv, prog="rezolus-sampler prove")


def _audit(argv: list[str]) -> int:
    from rezolus_sampler.audit import report

    return report.main(argv, prog="rezolus-sampler audit")


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "prove": (_prove, "compile, load, attach and measure a rendered sampler (root)"),
    "audit": (_audit, "check every BPF sampler of a Rezolus tree against principles.md"),
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
