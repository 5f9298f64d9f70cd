"""AGENTS.md and the Rezolus skill: the formats assistants read, and every command they show runs.

Commands are taken from the fenced `sh` blocks of both files. Each must match a runner
below, which executes it verbatim (bash, the project's .venv/bin first on PATH) and checks
its result: a command added to the docs without a runner here fails this test.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml
from copier_runner import template_repo
from support import REPO, default_answers, make_tree, require_rezolus, rezolus_dir

from rezolus_sampler.kernel import bpf

AGENTS = REPO / "AGENTS.md"
SKILLS = REPO / "skills"
SKILL = SKILLS / "add-or-review-rezolus-sampler" / "SKILL.md"
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.M | re.S)
NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SPEC_FIELDS = {"name", "description", "license", "compatibility", "metadata", "allowed-tools"}


def fenced_commands(path: Path) -> list[str]:
    """Commands of the fenced blocks (every fence must say `sh`); `\\` continues a line."""
    found = []
    for m in FENCE.finditer(path.read_text()):
        assert (
            m.group(1).strip() == "sh"
        ), f"{path.name}: fenced block tagged {m.group(1)!r}, not sh"
        pending = ""
        for line in m.group(2).splitlines():
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if text.endswith("\\"):
                pending += text[:-1].strip() + " "
                continue
            found.append(pending + text)
            pending = ""
    return found


def front_matter(path: Path) -> dict:
    text = path.read_text()
    assert text.startswith("---\n"), f"{path} must open with YAML front matter"
    end = text.index("\n---\n", 4)
    return yaml.safe_load(text[4:end])


def test_skill_front_matter_follows_agentskills_io() -> None:
    skills = sorted(SKILLS.glob("*/SKILL.md"))
    assert skills == [SKILL]
    meta = front_matter(SKILL)
    assert set(meta) <= SPEC_FIELDS and {"name", "description"} <= set(meta)
    name, description = meta["name"], meta["description"]
    assert NAME.match(name) and len(name) <= 64 and name == SKILL.parent.name
    assert isinstance(description, str) and 0 < len(description.strip()) <= 1024
    assert "Use when" in description  # says when to use it, as the spec asks
    assert len(SKILL.read_text().splitlines()) < 500


def _run(command: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


def _env(**extra: str) -> dict:
    env = dict(os.environ, PATH=f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}")
    env.update(extra)
    return env


def test_agents_md_commands_run() -> None:
    require_rezolus()
    runners = [  # (command pattern, expected exit, text the output must hold)
        (r"make \.venv/\.installed", 0, ""),
        (r"\.venv/bin/python -m pytest -q tests/test_principles\.py", 0, "passed"),
        (r'\.venv/bin/rezolus-sampler audit "\$REZOLUS_DIR"', 1, "56 finding(s)"),
    ]
    env = _env(REZOLUS_DIR=str(rezolus_dir()))
    commands = fenced_commands(AGENTS)
    assert commands
    for command in commands:
        matching = [r for r in runners if re.fullmatch(r[0], command)]
        assert matching, f"AGENTS.md shows `{command}`, which no runner in this test executes"
        _, code, text = matching[0]
        proc = _run(command, REPO, env)
        assert (
            proc.returncode == code
        ), f"`{command}`: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        assert text in proc.stdout, f"`{command}`: {text!r} not in its output"


def other_tree(tmp_path: Path) -> Path:
    tree = make_tree(tmp_path / "rezolus-copier")
    (tree / "my-sampler.yml").write_text(yaml.safe_dump(default_answers()))
    return tree


def test_skill_commands_run_in_a_rezolus_tree(tmp_path) -> None:
    require_rezolus()
    tree = make_tree(tmp_path / "rezolus")
    (tree / "my-sampler.yml").write_text(yaml.safe_dump(default_answers()))
    sampler = "src/agent/samplers/scheduler/linux/processes"
    kernel = 0 if bpf.bpf_available(require_btf=False)[0] else 77  # 77: cannot load BPF here
    runners = [
        (
            r"""grep -rn 'SEC\("' src/agent/samplers --include=mod\.bpf\.c \| grep -w sched_switch""",
            0,
            "scheduler/linux/runqueue/mod.bpf.c",
        ),
        (r"rezolus-sampler tracepoints sched:sched_switch", 0, "already attached by"),
        (r"rezolus-sampler new --answers my-sampler\.yml --check", 0, "no problems"),
        (r"rezolus-sampler new --answers my-sampler\.yml", 0, ""),
        (r'copier copy --trust --defaults --data-file my-sampler\.yml "\$TEMPLATE" \.', 0, ""),
        (
            r'rezolus-sampler prove "\$SAMPLER"',
            kernel,
            "scheduler_processes_events" if kernel == 0 else "",
        ),
        (r'rezolus-sampler audit \. --sampler "\$SAMPLER"', 0, "0 finding(s)"),
        (r"rezolus-sampler audit \.", 1, "finding(s)"),
        (
            r'rezolus-sampler audit \. --sampler "\$SAMPLER" --measure',
            kernel,
            "sched_process_fork_btf" if kernel == 0 else "",
        ),
    ]
    env = _env(TEMPLATE=str(template_repo(tmp_path / "rezolus-sampler")), SAMPLER=sampler)
    commands = fenced_commands(SKILL)
    assert commands
    for command in commands:
        matching = [r for r in runners if re.fullmatch(r[0], command)]
        assert matching, f"SKILL.md shows `{command}`, which no runner in this test executes"
        _, code, text = matching[0]
        # plain Copier is shown as the alternative to `new`: it renders into a tree of its own
        where = tree if not command.startswith("copier") else other_tree(tmp_path)
        proc = _run(command, where, env)
        assert (
            proc.returncode == code
        ), f"`{command}`: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        assert text in proc.stdout, f"`{command}`: {text!r} not in its output"
        if command.startswith(("copier", "rezolus-sampler new --answers my-sampler.yml")) and "--check" not in command:
            assert (where / sampler / "mod.bpf.c").is_file()
