"""`copier update -a <sampler>/.copier-answers.yml` refreshes one sampler's
boilerplate from a newer template version and leaves the others alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO, default_answers, load_answers, sampler_path, tree_snapshot

GIT = ["git", "-c", "user.email=t@example.com", "-c", "user.name=test"]
BPF_TEMPLATE = next(REPO.glob("template/*/agent/samplers/*/linux/*/mod.bpf.c.jinja"))


def git(cwd: Path, *args: str) -> None:
    subprocess.run(GIT + list(args), cwd=cwd, check=True, capture_output=True)


def copier(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "copier", *args], cwd=cwd, capture_output=True, text=True
    )


@pytest.fixture
def template_v1(tmp_path: Path) -> Path:
    """This template as a tagged git repository (v1), apart from the working copy."""
    src = tmp_path / "template"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__",
                                                            "*.egg-info", ".pytest_cache"))
    git(src, "init", "-q")
    git(src, "add", "-A")
    git(src, "commit", "-qm", "v1")
    git(src, "tag", "v1")
    return src


def test_update_refreshes_one_sampler(tree, template_v1, tmp_path):
    first, second = default_answers(), load_answers(REPO / "examples/syscall_outcomes.yml")
    for answers in (first, second):
        data = tmp_path / f"{answers['sampler']}.yml"
        data.write_text(__import__("yaml").safe_dump(answers))
        result = copier(tree, "copy", "--trust", "--defaults", "--data-file", str(data),
                        "--vcs-ref", "v1", str(template_v1), ".")
        assert result.returncode == 0, result.stderr
    git(tree, "add", "-A")
    git(tree, "commit", "-qm", "two samplers")
    # a contributor's own edit in a generated file must survive the update
    own = sampler_path(tree, first) / "mod.rs"
    own.write_text(own.read_text().replace("fn init(", "// tuned by hand\nfn init(", 1))
    git(tree, "commit", "-qam", "hand edit")
    untouched = {k: v for k, v in tree_snapshot(tree).items()
                 if k.startswith(str(sampler_path(tree, second).relative_to(tree)))}

    # v2 of the template changes the generated boilerplate
    bpf_template = template_v1 / BPF_TEMPLATE.relative_to(REPO)
    text = bpf_template.read_text()
    bpf_template.write_text(text.replace("#define MAX_CPUS 1024", "#define MAX_CPUS 1024 // refreshed"))
    git(template_v1, "commit", "-qam", "v2")
    git(template_v1, "tag", "v2")

    answers_file = sampler_path(tree, first).relative_to(tree) / ".copier-answers.yml"
    result = copier(tree, "update", "--trust", "--defaults", "-a", str(answers_file))
    assert result.returncode == 0, result.stderr

    refreshed = sampler_path(tree, first)
    assert "#define MAX_CPUS 1024 // refreshed" in (refreshed / "mod.bpf.c").read_text()
    assert "// tuned by hand" in (refreshed / "mod.rs").read_text()
    assert "_commit: v2" in (refreshed / ".copier-answers.yml").read_text()
    after = tree_snapshot(tree)
    assert {k: after[k] for k in untouched} == untouched, "the other sampler changed"
    build_rs = (tree / "build.rs").read_text()
    assert build_rs.count('("scheduler", "processes"),') == 1
    assert build_rs.count('("syscall", "outcomes"),') == 1
