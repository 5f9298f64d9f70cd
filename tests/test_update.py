"""`copier update -a <sampler>/.copier-answers.yml`: refreshes one sampler's
boilerplate from a newer template version and leaves the others alone; a
conflict fails loudly; and after an update that changes the answers, the tree
equals a fresh copy of the new answers (registration included)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from copier_runner import copier_cli, copy_template, differences, snapshot  # noqa: F401
from support import REPO, default_answers, load_answers, make_tree, sampler_path, tree_snapshot

# imported before any in-process Copier run swaps the package for a template clone's
from rezolus_sampler.tree import destination
from rezolus_sampler.tree.update import conflicts, main

GIT = ["git", "-c", "user.email=t@example.com", "-c", "user.name=test"]
BPF_TEMPLATE = next(REPO.glob("template/*/agent/samplers/*/linux/*/mod.bpf.c.jinja"))
RELEASE_0_1_0 = "6182093"  # the commit released as v0.1.0


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(GIT + list(args), cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def copier(copier_cli):
    """The copier command line (stdout and stderr together in `.output`)."""
    return copier_cli


def data_file(tmp_path: Path, answers: dict, name: str) -> str:
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(answers))
    return str(path)


@pytest.fixture
def template_v1(tmp_path: Path) -> Path:
    """This template as a tagged git repository (v1), apart from the working copy."""
    src = copy_template(tmp_path / "template")
    git(src, "init", "-q")
    git(src, "add", "-A")
    git(src, "commit", "-qm", "v1")
    git(src, "tag", "v1")
    return src


def test_update_refreshes_one_sampler_and_reports_conflicts(tree, template_v1, tmp_path, copier):
    first, second = default_answers(), load_answers(REPO / "examples/syscall_outcomes.yml")
    for answers in (first, second):
        result = copier(tree, "copy", "--trust", "--defaults", "--data-file",
                        data_file(tmp_path, answers, answers["sampler"]), "--vcs-ref", "v1",
                        str(template_v1), ".")
        assert result.returncode == 0, result.output
    git(tree, "add", "-A")
    git(tree, "commit", "-qm", "two samplers")
    # a contributor's own edit in a generated file must survive the update
    own = sampler_path(tree, first) / "mod.rs"
    own.write_text(own.read_text().replace("fn init(", "// tuned by hand\nfn init(", 1))
    # and one on a line the next version changes: that is a conflict
    clash = sampler_path(tree, second) / "mod.bpf.c"
    clash.write_text(clash.read_text().replace("#define MAX_CPUS 1024", "#define MAX_CPUS 2048"))
    git(tree, "commit", "-qam", "hand edits")
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
    assert result.returncode == 0, result.output

    refreshed = sampler_path(tree, first)
    assert "#define MAX_CPUS 1024 // refreshed" in (refreshed / "mod.bpf.c").read_text()
    assert "// tuned by hand" in (refreshed / "mod.rs").read_text()
    assert "_commit: v2" in (refreshed / ".copier-answers.yml").read_text()
    after = tree_snapshot(tree)
    assert {k: after[k] for k in untouched} == untouched, "the other sampler changed"
    build_rs = (tree / "build.rs").read_text()
    assert build_rs.count('("scheduler", "processes"),') == 1
    assert build_rs.count('("syscall", "outcomes"),') == 1

    # the second sampler's update meets the hand edit: loud, non-zero, named
    git(tree, "add", "-A")
    git(tree, "commit", "-qm", "first updated")
    answers_file = sampler_path(tree, second).relative_to(tree) / ".copier-answers.yml"
    result = copier(tree, "update", "--trust", "--defaults", "-a", str(answers_file))
    assert result.returncode != 0
    conflicted = str(clash.relative_to(tree))
    assert "rezolus-sampler: copier update could not merge 1 file(s)" in result.output
    assert re.search(rf"^  {re.escape(conflicted)}\s+conflict markers$", result.output, re.M)
    assert "<<<<<<< before updating" in result.output  # how to resolve
    assert "<<<<<<< before updating\n#define MAX_CPUS 2048\n" in clash.read_text()


# ----------------------------------------------------------- answers change


def _release_tree(repo: Path, dst: Path) -> bool:
    """The files of release v0.1.0 at `dst`, from this checkout's history (False
    when the history is not here, e.g. a shallow clone)."""
    archive = subprocess.run(["git", "archive", RELEASE_0_1_0, "copier.yml", "template", "hooks"],
                             cwd=repo, capture_output=True)
    if archive.returncode != 0:
        return False
    dst.mkdir()
    subprocess.run(["tar", "-x", "-C", str(dst)], input=archive.stdout, check=True)
    return True


@pytest.fixture
def released(tmp_path: Path) -> tuple[Path, str]:
    """A template repository: v0.1.0 (the real release when this checkout has it,
    else this working copy) and v0.2.0 (this working copy)."""
    repo = tmp_path / "template"
    old = "v0.1.0 release"
    if not _release_tree(REPO, repo):
        copy_template(repo)
        old = "v0.1.0 = this version (no release history in this checkout)"
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v0.1.0")
    git(repo, "tag", "v0.1.0")
    for path in repo.iterdir():
        if path.name != ".git":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    copy_template(repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v0.2.0", "--allow-empty")
    git(repo, "tag", "v0.2.0")
    return repo, old


def answers_v1() -> dict:
    answers = default_answers()
    answers["description"] = "Counts process forks, execs and frees"
    answers["counters"] = answers["counters"] + [
        {"name": "procs_forks", "description": "Forks", "increments": ["sched:sched_process_fork"]},
        {"name": "procs_frees", "description": "Frees", "increments": ["sched:sched_process_free"]},
    ]
    return answers


def answers_v2() -> dict:
    """v1 with a new description, a renamed and a removed unprefixed metric, and a
    tracepoint (with its label value) removed."""
    answers = default_answers()
    answers["description"] = "Counts process forks and execs"
    answers["tracepoints"] = [t for t in answers["tracepoints"] if "free" not in t]
    events = answers["counters"][0]
    events["labels"] = {"event": ["fork", "exec"]}
    events["increments"] = [i for i in events["increments"] if "free" not in i["at"]]
    answers["counters"] = [events, {"name": "procs_spawns", "description": "Forks",
                                    "increments": ["sched:sched_process_fork"]}]
    return answers


def without_commit(snap):
    files, dirs = snap
    return {k: (re.sub(rb"(?m)^_commit: .*$", b"", data), mode)
            for k, (data, mode) in files.items()}, dirs


def test_update_with_new_answers_equals_a_fresh_copy(released, tmp_path, copier):
    repo, old = released
    a, b = data_file(tmp_path, answers_v1(), "a"), data_file(tmp_path, answers_v2(), "b")
    updated = make_tree(tmp_path / "updated")
    result = copier(updated, "copy", "--trust", "--defaults", "--data-file", a,
                    "--vcs-ref", "v0.1.0", str(repo), ".")
    assert result.returncode == 0, result.output
    assert '("procs_frees", "scheduler_processes")' in (
        updated / "src/analysis/extract/context.rs").read_text()
    git(updated, "add", "-A")
    git(updated, "commit", "-qm", "sampler at v0.1.0")
    answers_file = "src/agent/samplers/scheduler/linux/processes/.copier-answers.yml"

    # (an update cannot rename the sampler: test_update_refuses_a_rename)
    result = copier(updated, "update", "--trust", "--defaults", "--data-file", b,
                    "-a", answers_file)
    assert result.returncode == 0, (old, result.output)

    fresh = make_tree(tmp_path / "fresh")
    result = copier(fresh, "copy", "--trust", "--defaults", "--data-file", b,
                    "--vcs-ref", "v0.2.0", str(repo), ".")
    assert result.returncode == 0, result.output

    got, want = without_commit(snapshot(updated)), without_commit(snapshot(fresh))
    assert got == want, (old, differences(want, got))


def test_update_refuses_a_rename(tmp_path):
    """The preflight of an update compares the new names with the answers file
    being updated (cheaper than a whole `copier update`, which shows the same line)."""
    answers_file = Path("src/agent/samplers/scheduler/linux/processes/.copier-answers.yml")
    (tmp_path / answers_file).parent.mkdir(parents=True)
    (tmp_path / answers_file).write_text("_commit: v0.1.0\ngroup: scheduler\nsampler: processes\n")
    context = {"_copier_operation": "update", "_copier_conf": {"answers_file": answers_file}}
    same = {"group": "scheduler", "sampler": "processes"}
    assert destination.rename_refusal(context, tmp_path, same) == ""
    assert destination.rename_refusal(context, tmp_path, same | {"sampler": "procs"}) == (
        "copier update cannot rename scheduler/processes to scheduler/procs; remove it with "
        "'rezolus-sampler remove scheduler/processes' and copy the sampler under its new name")
    copy = context | {"_copier_operation": "copy"}
    assert destination.rename_refusal(copy, tmp_path, same | {"sampler": "procs"}) == ""


def test_conflict_check_finds_markers_unmerged_paths_and_rejects(tmp_path):
    """The after-update check on a checkout inside a bigger repository: an unmerged
    path (inline conflict), a file with markers only, and a .rej file are named,
    relative to the Rezolus checkout; a clean tree passes."""
    repo = tmp_path / "repo"
    root = repo / "rezolus"
    (root / "s").mkdir(parents=True)
    for name in ("a.c", "b.c"):
        (root / "s" / name).write_text("one\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    assert conflicts(root) == [] and main(["check", "--root", str(root)]) == 0
    # a real unmerged path in git's index, as Copier leaves it
    git(repo, "checkout", "-qb", "other")
    (root / "s/a.c").write_text("theirs\n")
    git(repo, "commit", "-qam", "theirs")
    git(repo, "checkout", "-q", "-")
    (root / "s/a.c").write_text("ours\n")
    git(repo, "commit", "-qam", "ours")
    subprocess.run(GIT + ["merge", "-q", "other"], cwd=repo, capture_output=True)
    (root / "s/b.c").write_text("<<<<<<< before updating\nx\n=======\ny\n>>>>>>> after updating\n")
    (root / "s/b.c.rej").write_text("@@ rejected @@\n")
    assert conflicts(root) == [
        ("s/a.c", "conflict markers"),
        ("s/b.c", "conflict markers"),
        ("s/b.c.rej", "rejected hunks: apply them by hand, then delete the .rej file"),
    ]
    assert main(["check", "--root", str(root)]) == 1
