"""Generation time: `copier copy` of a typical spec and of a 32-tracepoint /
256-slot spec into a scratch Rezolus tree, and a re-render of an existing
sampler, each timed as a user runs it (a fresh `python -m copier` process,
render plus registration task). Prints a markdown table; `--json` for machines.

    .venv/bin/python bench/generation.py [--runs N] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from support import default_answers, make_tree, rezolus_dir  # noqa: E402

from rezolus_sampler.spec import model  # noqa: E402

# 32 tracepoints present in both architectures' vmlinux.h (btf_trace_<event>).
WIDE_SPEC = Path(__file__).with_name("wide_32x8.yml")


def wide_spec() -> dict:
    """32 hooks x 8 lanes = 256 slots in one family (the documented per-family limit)."""
    return yaml.safe_load(WIDE_SPEC.read_text())


def copy(tree: Path, data: Path, *extra: str) -> float:
    cmd = [sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--quiet",
           "--vcs-ref", "HEAD", "--data-file", str(data), *extra, str(REPO), str(tree)]
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"copier failed:\n{result.stderr[-2000:]}")
    return elapsed


def measure(spec: dict, runs: int, workdir: Path) -> dict:
    data = workdir / f"{spec['sampler']}.yml"
    data.write_text(yaml.safe_dump(spec))
    first, again = [], []
    for i in range(runs):
        tree = make_tree(workdir / f"{spec['sampler']}-{i}")
        first.append(copy(tree, data))
        again.append(copy(tree, data, "--overwrite"))  # re-render an existing sampler
    sampler = model.build(spec)
    return {
        "spec": f"{spec['group']}_{spec['sampler']}",
        "tracepoints": len(sampler.hooks), "programs": len(sampler.programs),
        "slots": len(sampler.slots),
        "copy_s": statistics.median(first), "copy_max_s": max(first),
        "rerender_s": statistics.median(again), "rerender_max_s": max(again),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if rezolus_dir() is None:
        sys.exit("no Rezolus checkout: set REZOLUS_DIR")
    spec = wide_spec()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(default_answers(), args.runs, Path(tmp)),
                measure(spec, args.runs, Path(tmp))]
    machine = f"{platform.system()} {platform.release()} {platform.machine()}, python {platform.python_version()}"
    if args.json:
        print(json.dumps({"machine": machine, "runs": args.runs, "rows": rows}, indent=2))
        return 0
    print(f"`{' '.join(['bench/generation.py'] + sys.argv[1:])}` on {machine}; "
          f"median of {args.runs} runs [max], wall time of `python -m copier copy` incl. registration\n")
    print("| spec | tracepoints | programs | slots | copy | re-render (--overwrite) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['spec']} | {r['tracepoints']} | {r['programs']} | {r['slots']} | "
              f"{r['copy_s']:.2f} s [{r['copy_max_s']:.2f}] | "
              f"{r['rerender_s']:.2f} s [{r['rerender_max_s']:.2f}] |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
