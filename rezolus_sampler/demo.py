"""`make demo`: the main job on the built-in default, end to end.

Copies the Rezolus tree (REZOLUS_DIR, else ../shared/rezolus) to a scratch
git repository, runs `copier copy --trust --defaults` of this template into
it as a contributor would, shows what was written and registered, compiles
the BPF object with Rezolus' flags for both architectures, loads it through
the kernel verifier where this machine allows BPF, and runs the proof command
on it (a fork/exec workload: counts and ns per event).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rezolus_sampler.kernel import bpf

REPO = Path(__file__).resolve().parent.parent


def rezolus_source() -> Path:
    path = Path(os.environ.get("REZOLUS_DIR", REPO.parent / "shared" / "rezolus"))
    if not (path / "build.rs").is_file():
        sys.exit(f"demo: no Rezolus checkout at {path}; set REZOLUS_DIR")
    return path


def run(cmd: list[str], cwd: Path) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


def scratch_tree(source: Path, parent: Path) -> Path:
    tree = parent / "rezolus"
    shutil.copytree(source, tree, ignore=shutil.ignore_patterns("target", ".git"))
    for root, dirs, files in os.walk(tree):
        for name in dirs + files:
            os.chmod(Path(root) / name, 0o755 if name in dirs else 0o644)
    git = ["git", "-c", "user.email=demo@example.com", "-c", "user.name=demo"]
    run(["git", "init", "-q"], tree)
    run(git + ["add", "-A"], tree)
    run(git + ["commit", "-qm", "Rezolus snapshot"], tree)
    return tree


def section(title: str) -> None:
    print(f"\n== {title}")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="rezolus-demo-") as tmp:
        tree = scratch_tree(rezolus_source(), Path(tmp))
        section(f"copier copy --trust --defaults {REPO} {tree}")
        subprocess.run(
            [sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--quiet",
             "--vcs-ref", "HEAD", str(REPO), str(tree)],
            check=True,
        )
        section("what changed in the Rezolus tree (git status)")
        print(run(["git", "status", "--short", "--untracked-files=all"], tree), end="")
        print(run(["git", "diff", "--stat"], tree), end="")
        sampler = next((tree / "src/agent/samplers").glob("*/linux/*/.copier-answers.yml")).parent
        section(f"{sampler.relative_to(tree)}/mod.bpf.c (first 40 lines)")
        print("".join((sampler / "mod.bpf.c").read_text().splitlines(True)[:40]), end="")

        section("compile with Rezolus' build.rs flags")
        objects = {}
        for arch in ("x86_64", "aarch64"):
            out = Path(tmp) / f"{arch}.o"
            bpf.compile_bpf(sampler / "mod.bpf.c", out, tree, arch)
            objects[arch] = out
            print(f"{arch}: ok ({out.stat().st_size} bytes)")

        section("load through the kernel verifier")
        ok, reason = bpf.bpf_available()
        if not ok:
            print(f"skipped: {reason}")
            return 0
        with bpf.BpfObject.open(objects["x86_64"]) as probe:
            names = probe.program_names()
        for variant in ("_btf", "_raw"):
            keep = [n for n in names if n.endswith(variant)] or names
            with bpf.BpfObject.open(objects["x86_64"]) as obj:
                for name in names:
                    obj.set_autoload(name, name in keep)
                obj.load()
                for name in keep:
                    info = obj.prog_info(name)
                    print(f"{name}: verified {info.verified_insns} instructions, "
                          f"{info.xlated_insns} translated")
        section(f"prove it counts: rezolus-sampler prove {sampler.relative_to(tree)}")
        from rezolus_sampler.kernel import prove

        return prove.main([str(sampler), "--count", "200"])


if __name__ == "__main__":
    raise SystemExit(main())
