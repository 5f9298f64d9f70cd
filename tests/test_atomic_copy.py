"""`copier copy` into a Rezolus tree is all or nothing, through the real command
line: refused in the wrong place before anything is written; after a failure
at any target file, or a signal at any point, the tree is byte-identical to
before or holds the complete, registered sampler; one line says which."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from copier_runner import CopierServer, Inotify, copy_template, differences, restore, snapshot
from support import REPO, make_tree, require_rezolus

JOURNAL = ".rezolus-sampler-journal.json"
SAMPLER = Path("src/agent/samplers/scheduler/linux/processes")
COPY = ("copy", "--trust", "--defaults", "--quiet")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    require_rezolus()
    base = tmp_path_factory.mktemp("atomic")
    # A plain directory (no .git): Copier renders from it in place, no clone per run.
    template = copy_template(base / "template")
    tree = make_tree(base / "rezolus")
    server = CopierServer(template, base, trees=[tree])
    yield server, template, tree
    server.close()


def copy(env, dst: Path, *extra: str):
    server, template, _ = env
    return server.run(dst, *COPY, *extra, str(template), ".")


def our_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("rezolus-sampler")]


def complete_state(env):
    """The tree after an uninterrupted copy (and the events that copy made)."""
    server, template, tree = env
    before = snapshot(tree)
    watcher = Inotify(watch_dirs(tree))
    run = server.start(tree, *COPY, str(template), ".")
    events = []
    while True:
        batch = watcher.events(0.2)
        events += batch
        if not batch and run.returncode is None and _exited(run):
            break
    watcher.close()
    assert run.returncode == 0, run.output
    done = snapshot(tree)
    restore(tree, before)
    assert snapshot(tree) == before
    return before, done, len(events)


def _exited(run) -> bool:
    try:
        os.kill(run.pid, 0)
        return False
    except ProcessLookupError:
        run.wait()
        return True


def watch_dirs(tree: Path) -> list[Path]:
    return [tree, tree / "config", tree / "src/analysis/extract", tree / "src/agent/samplers",
            tree / "src/agent/samplers/scheduler", tree / "src/agent/samplers/scheduler/linux"]


# ------------------------------------------------------------------ wrong place


def test_refused_outside_a_rezolus_tree(env, tmp_path):
    _, _, tree = env
    other = tmp_path / "other"
    other.mkdir()
    (other / "Cargo.toml").write_text('[package]\nname = "other"\n')
    (other / "build.rs").write_text("fn main() {}\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {
        empty: 'is not the root of a Rezolus checkout: no Cargo.toml with [package] name = '
               '"rezolus"; no build.rs; no src/agent/samplers/mod.rs',
        other: "is not the root of a Rezolus checkout: no Cargo.toml with [package] name = "
               '"rezolus"; no build.rs with `const SOURCES: &[(&str, &str)]`; '
               "no src/agent/samplers/mod.rs",
        tree / "src": f"is inside the Rezolus checkout {tree}, not at its root",
    }
    for dst, named in cases.items():
        before = snapshot(dst)
        run = copy(env, dst)
        assert run.returncode == 1, run.output
        assert f"Refusing to render: {dst} {named}" in run.output
        assert "Traceback" not in run.output
        assert snapshot(dst) == before


@pytest.mark.parametrize("rel,anchor", [
    ("build.rs", "SOURCES"),
    ("src/analysis/extract/context.rs", "METRIC_SAMPLERS"),
])
def test_refused_without_a_registration_anchor(env, rel, anchor):
    _, _, tree = env
    pristine = snapshot(tree)
    path = tree / rel
    if anchor is None:
        path.unlink()
    else:
        path.write_text(path.read_text().replace(f"const {anchor}:", f"const {anchor}_GONE:"))
    before = snapshot(tree)
    try:
        run = copy(env, tree)
        assert run.returncode == 1, run.output
        refusal = [line for line in run.output.splitlines() if line.startswith("Refusing")]
        assert len(refusal) == 1, run.output
        assert (anchor or Path(rel).name) in refusal[0]
        assert "Traceback" not in run.output
        assert snapshot(tree) == before, differences(before, snapshot(tree))
    finally:
        restore(tree, pristine)


# ------------------------------------------------------------------ failures


def _chattr(flag: str, path: Path) -> None:
    subprocess.run(["chattr", flag, str(path)], check=True, capture_output=True)


@pytest.fixture
def immutable(env):
    """Make a path immutable (root: chattr +i, which stops root too); undone after."""
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("needs root and chattr to make a file unwritable for root")
    made = []

    def make(path: Path) -> None:
        try:
            _chattr("+i", path)
        except subprocess.CalledProcessError:
            pytest.skip(f"the file system under {path} does not support chattr +i")
        made.append(path)

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)


@pytest.mark.parametrize("target,extra", [
    ("build.rs", ()),
    ("src/analysis/extract/golden.rs", ()),
    ("src/analysis/extract/context.rs", ()),
    ("config/agent.toml", ()),
    ("src/agent/samplers/scheduler/mod.rs", ()),
    ("src/agent/samplers/mod.rs", ("--data", "group=widgets", "--data", "sampler=gadget")),
    ("src/agent/samplers/scheduler/linux", ()),                        # the rendered directory
])
def test_failure_at_a_target_leaves_the_tree_as_it_was(env, immutable, target, extra):
    _, _, tree = env
    before = snapshot(tree)
    immutable(tree / target)
    run = copy(env, tree, *extra)
    assert run.returncode != 0, run.output
    assert snapshot(tree) == before, differences(before, snapshot(tree))
    lines = our_lines(run.output)
    assert len(lines) == 1, run.output
    assert "Operation not permitted" in lines[0] and lines[0].endswith("the tree is as it was")
    assert "Traceback" not in run.output


def test_failure_while_overwriting_restores_the_previous_sampler(env, immutable):
    """--overwrite of an existing generated sampler with a new description: the last
    rendered file cannot be replaced, and the ones Copier rewrote before it get
    their previous bytes back."""
    _, template, tree = env
    sampler_template = next(template.glob("template/*/agent/samplers/*/linux/*"))
    rendered = [entry.name.removesuffix(".jinja") for entry in os.scandir(sampler_template)]
    rendered = [".copier-answers.yml" if "answers_file" in n else n for n in rendered]
    changing = [n for n in rendered if n != "stats.rs"]  # those the description is in
    assert len(changing) == 4
    pristine = snapshot(tree)
    assert copy(env, tree).returncode == 0
    try:
        before = snapshot(tree)
        immutable(tree / SAMPLER / changing[-1])
        run = copy(env, tree, "--overwrite", "--data", "description=Counts process events")
        assert run.returncode != 0, run.output
        assert snapshot(tree) == before, differences(before, snapshot(tree))
        assert len(our_lines(run.output)) == 1, run.output
    finally:
        _chattr("-i", tree / SAMPLER / changing[-1])
        restore(tree, pristine)


# ------------------------------------------------------------------ signals


def test_interrupt_at_every_file_event(env):
    """Signal the copy right after its k-th file event, for every k: Ctrl-C to the
    process group (Copier and its task), SIGTERM or SIGINT to Copier alone. Every
    time the tree is as before or complete, and never holds a journal."""
    server, template, tree = env
    before, done, n_events = complete_state(env)
    assert n_events > 10
    kinds = [("SIGINT", os.killpg), ("SIGTERM", os.kill), ("SIGINT", os.kill)]
    outcomes = []
    k = -1
    while True:
        # every other event until the first complete copy (the journal, the rendered
        # files, the task starting), then every eighth: from there on the task,
        # which holds signals, finishes within Copier's 0.25 s grace period
        # (test_killed_copy_is_rolled_back_by_recover kills it inside)
        k += 2 if "complete" not in outcomes else 8
        if k > n_events:
            break
        name, send = kinds[k % len(kinds)]
        watcher = Inotify(watch_dirs(tree))
        run = server.start(tree, *COPY, str(template), ".")
        seen = 0
        while seen < k:
            batch = watcher.events(5.0)
            if not batch:
                break  # the copy ended before its k-th event
            seen += len(batch)
        try:
            send(run.pid, getattr(signal, name))
        except ProcessLookupError:
            pass
        run.wait()
        watcher.close()
        after = snapshot(tree)
        state = "before" if after == before else "complete" if after == done else "HALF"
        assert state != "HALF", (k, name, differences(before, after), run.output)
        assert "Traceback" not in run.output, run.output
        assert not (tree / JOURNAL).exists()
        if state == "before" and our_lines(run.output):
            assert our_lines(run.output)[-1].endswith("the tree is as it was"), run.output
        outcomes.append(state)
        restore(tree, before)
    # the sweep did cross the copy: early signals undo it, late ones find it complete
    assert outcomes[0] == "before" and outcomes[-1] == "complete", outcomes


def test_killed_copy_is_rolled_back_by_recover(env):
    """SIGKILL (nothing runs in the killed process) half-way through registration
    leaves the journal; `rezolus-sampler recover` puts the tree back."""
    server, template, tree = env
    before = snapshot(tree)
    for _attempt in range(5):  # the kill must land before the task commits
        watcher = Inotify(watch_dirs(tree))
        run = server.start(tree, *COPY, str(template), ".")
        replaced = False
        while not replaced:
            batch = watcher.events(5.0)
            assert batch, "the copy ended before registering"
            replaced = any(path.name == "build.rs" and mask & 0x80 for mask, path in batch)
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        watcher.close()
        if (tree / JOURNAL).exists():
            break
        restore(tree, before)
    else:
        pytest.fail("the registration task committed before SIGKILL arrived, five times")
    assert snapshot(tree) != before
    result = subprocess.run(
        [sys.executable, "-m", "rezolus_sampler.cli", "recover", str(tree)],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "rezolus-sampler: rolled back the interrupted copy of scheduler_processes")
    assert snapshot(tree) == before, differences(before, snapshot(tree))
