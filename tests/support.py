"""Shared test helpers: a scratch Rezolus tree, rendering, and the build flags."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import warnings
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.yml"))
ARCHES = ("x86_64", "aarch64")


def rezolus_dir() -> Path | None:
    """REZOLUS_DIR, else ../shared/rezolus beside the project; None if neither exists."""
    env = os.environ.get("REZOLUS_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "rezolus")
    for candidate in candidates:
        if (candidate / "build.rs").is_file():
            return candidate.resolve()
    return None


def require_rezolus() -> Path:
    """The Rezolus checkout, or skip the test saying how to provide one."""
    import pytest

    root = rezolus_dir()
    if root is None:
        pytest.skip("no Rezolus checkout: set REZOLUS_DIR or place it at ../shared/rezolus")
    return root


def _writable(path: Path) -> None:
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = Path(root) / name
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    path.chmod(path.stat().st_mode | stat.S_IWUSR)


def make_tree(dst: Path) -> Path:
    """A writable git copy of the Rezolus snapshot at `dst` (the snapshot is never edited)."""
    source = rezolus_dir()
    assert source is not None, "no Rezolus checkout"
    shutil.copytree(source, dst, ignore=shutil.ignore_patterns("target", ".git"))
    _writable(dst)
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=test"]
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    subprocess.run(git + ["add", "-A"], cwd=dst, check=True)
    subprocess.run(git + ["commit", "-qm", "snapshot"], cwd=dst, check=True)
    return dst


def load_answers(path: Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def default_answers() -> dict:
    """What Enter at every prompt gives (`copier copy --defaults`; checked against
    Copier itself by tests/test_prompt.py::test_defaults_are_the_documented_sampler)."""
    events = ["fork", "exec", "free"]
    args = {"fork": "(parent, child)", "exec": "(task, old_pid, bprm)", "free": "(task)"}
    return {
        "group": "scheduler",
        "sampler": "processes",
        "attach": "tp_btf",
        "tracepoints": [f"sched:sched_process_{e}{args[e]}" for e in events],
        "description": "Counts fork, exec and free events",
        "layout": "totals",
        "histograms": [],
        "counters": [
            {
                "name": "scheduler_processes_events",
                "description": "The number of fork / exec / free events",
                "unit": "events",
                "labels": {"event": events},
                "increments": [
                    {"at": f"sched:sched_process_{e}", "labels": {"event": e}} for e in events
                ],
            }
        ],
    }


def render(tree: Path, answers: dict | None = None, overwrite: bool = False, **kwargs):
    """`copier copy --trust --defaults` of this template into `tree`; returns the Worker."""
    import copier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return copier.run_copy(
            str(REPO),
            str(tree),
            data=answers or {},
            defaults=True,
            unsafe=True,
            overwrite=overwrite,
            quiet=True,
            vcs_ref="HEAD",
            **kwargs,
        )


def sampler_path(tree: Path, answers: dict) -> Path:
    return tree / "src" / "agent" / "samplers" / answers["group"] / "linux" / answers["sampler"]


def clang_command(tree: Path, source: Path, out: Path, arch: str) -> list[str]:
    """Rezolus' build.rs flags plus the ones libbpf-cargo adds."""
    define = {"x86_64": "x86", "aarch64": "arm64"}[arch]
    return [
        "clang", "-g", "-O2", "-target", "bpf", "-c", "-fno-stack-protector",
        f"-I{tree}/src/agent/bpf/{arch}", "-fno-unwind-tables", f"-D__TARGET_ARCH_{define}",
        "-Wall", "-Werror", str(source), "-o", str(out),
    ]


def tree_snapshot(tree: Path) -> dict[str, bytes]:
    """Every file under `tree` (minus .git) with its bytes, to prove nothing changed."""
    return {
        str(p.relative_to(tree)): p.read_bytes()
        for p in sorted(tree.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(tree).parts
    }


def matrix_answers(attach: str, layout: str) -> dict:
    """The default spec under another attach style and layout, with its own names."""
    answers = default_answers()
    name = f"m_{attach}_{layout}"
    answers |= {"sampler": name, "attach": attach, "layout": layout}
    if attach == "tracepoint":  # classic tracepoints take no argument names
        answers["tracepoints"] = [t.split("(")[0] for t in answers["tracepoints"]]
    answers["counters"] = [dict(c, name=f"scheduler_{name}_events") for c in answers["counters"]]
    return answers


def all_cases() -> dict[str, dict]:
    """Every example, the default, and the attach-style x layout matrix."""
    cases = {path.stem: load_answers(path) for path in EXAMPLES}
    cases["default"] = default_answers()
    for attach in ("tp_btf", "raw_tp", "tracepoint"):
        for layout in ("totals", "per_cpu"):
            cases[f"matrix_{attach}_{layout}"] = matrix_answers(attach, layout)
    cases["wide_32x8"] = wide_answers()
    cases["awkward_names"] = awkward_answers()
    return cases


def awkward_answers() -> dict:
    """Names that collide with what the generated code uses, unless it namespaces them:
    arguments named like generated locals, families named like libbpf macros."""
    return {
        "group": "awkward",
        "sampler": "names",
        "description": "Names the generator must keep apart from its own",
        "attach": "tp_btf",
        "layout": "totals",
        "tracepoints": ["sched:sched_process_fork(cpu, idx)"],
        "counters": [
            {"name": name, "description": f"Family {name}", "labels": {"lane": 4},
             "increments": [{"at": "sched:sched_process_fork", "index": {"lane": "idx->pid & 3"},
                             "when": "cpu->pid != 0"}]}
            for name in ("bpf_map_type_array", "bpf_f_mmapable", "license", "sec", "counters_bank")
        ],
        "histograms": [],
    }


def wide_answers() -> dict:
    """The generation benchmark's 32-tracepoint / 256-slot spec."""
    return load_answers(REPO / "bench" / "wide_32x8.yml")


CASES = all_cases()


TEMPLATE_FILES = ("mod.bpf.c", "mod.rs", "stats.rs", "README.md")


def render_files(answers: dict, tree: Path | None = None) -> dict[str, str]:
    """The sampler's files rendered in-process by the same templates and Jinja globals
    Copier uses (no Copier run, no registration): for tests that render many specs."""
    from jinja2 import FileSystemLoader
    from jinja2.sandbox import SandboxedEnvironment

    from rezolus_sampler.copier_glue import SamplerExtension

    sampler_dir = next(REPO.glob("template/*/agent/samplers/*/linux/*"))
    env = SandboxedEnvironment(
        loader=FileSystemLoader(str(sampler_dir)),
        extensions=[SamplerExtension],
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    context = {"copyright_year": 2026, **answers}
    context["_copier_conf"] = {"dst_path": str(tree) if tree else "/nonexistent"}
    return {name: env.get_template(f"{name}.jinja").render(context) for name in TEMPLATE_FILES}


def write_sampler(tree: Path, answers: dict) -> Path:
    """Render `answers` in-process into their sampler directory under `tree`."""
    directory = sampler_path(tree, answers)
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in render_files(answers, tree).items():
        (directory / name).write_text(text)
    return directory
