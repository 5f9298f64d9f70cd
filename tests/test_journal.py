"""The rollback journal on its own (rezolus_sampler/tree/journal.py): what a
rollback restores and deletes, that it can be repeated, and who may roll back."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rezolus_sampler.tree.journal import JOURNAL, Journal, JournalError, recover, temp_path


def files(root):
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode & 0o777)
            for p in sorted(root.rglob("*")) if p.is_file()}


def dirs(root):
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()}


@pytest.fixture
def root(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config/agent.toml").write_text("[general]\n")
    os.chmod(tmp_path / "config/agent.toml", 0o640)
    existing = tmp_path / "samplers/old/linux/kept"
    existing.mkdir(parents=True)
    (existing / "mod.rs").write_text("// before\n")
    return tmp_path


def test_rollback_restores_everything_the_operation_touched(root):
    before, before_dirs = files(root), dirs(root)
    new_dir = root / "samplers/fresh/linux/one"
    journal = Journal.begin(root, "copy", "fresh_one", new_dir)
    assert journal.created_dirs == ["samplers/fresh", "samplers/fresh/linux",
                                    "samplers/fresh/linux/one"]
    new_dir.mkdir(parents=True)
    (new_dir / "mod.rs").write_text("rendered\n")
    journal.write(root / "config/agent.toml", b"[general]\n[samplers.fresh_one]\n")
    journal.write(root / "samplers/mod.rs", b"mod fresh;\n")  # a new file
    journal.write(root / "src/new/deep.rs", b"x\n")  # in directories made for it
    temp_path(root / "samplers/old/linux/mod.rs").write_text("left by a killed writer")
    journal.record([root / "samplers/old/linux/mod.rs"])
    assert (root / JOURNAL).exists()
    assert journal.rollback() == []
    assert files(root) == before and dirs(root) == before_dirs


def test_overwrite_rollback_removes_what_came_into_an_existing_directory(root):
    sampler = root / "samplers/old/linux/kept"
    before, before_dirs = files(root), dirs(root)
    journal = Journal.begin(root, "copy", "old_kept", sampler)
    (sampler / "mod.rs").write_text("// after\n")
    (sampler / "added.rs").write_text("new in this version\n")
    (sampler / "sub").mkdir()
    (sampler / "sub/x").write_text("x")
    assert journal.rollback() == []
    assert files(root) == before and dirs(root) == before_dirs


def test_rollback_is_idempotent_and_finishes_an_interrupted_one(root):
    before = files(root)
    journal = Journal.begin(root, "remove", "old_kept", root / "samplers/old/linux/kept")
    journal.write(root / "config/agent.toml", b"changed\n")
    journal.remove_dir(root / "samplers/old/linux/kept")
    again = Journal.load(root)  # what a later process reads
    # a rollback that stopped after its first step ...
    (root / "config/agent.toml").write_text("[general]\n")
    os.chmod(root / "config/agent.toml", 0o640)
    # ... is finished by the next one, and a third changes nothing
    assert again.rollback() == []
    assert files(root) == before
    assert journal.rollback() == [] and files(root) == before
    assert not (root / JOURNAL).exists()


def test_only_a_dead_owners_journal_is_recovered(root):
    Journal.begin(root, "copy", "a_b")  # owned by this live process
    with pytest.raises(JournalError, match="another rezolus-sampler operation"):
        Journal.begin(root, "copy", "c_d")
    assert recover(root) == ""  # alive: not ours to undo
    (root / JOURNAL).unlink()

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    journal = Journal.begin(root, "copy", "a_b", owner_pid=int(dead))
    journal.write(root / "config/agent.toml", b"half\n")
    with pytest.raises(JournalError, match="rezolus-sampler recover"):
        Journal.begin(root, "copy", "c_d")
    assert recover(root) == "rolled back the interrupted copy of a_b"
    assert (root / "config/agent.toml").read_text() == "[general]\n"
    assert recover(root) == ""
