"""Answers migrations: the registry (rezolus_sampler/spec/migrations.py) and its
wiring in copier.yml `_migrations` agree, every migration turns its old-form
answers into answers the model accepts, and `copier update` runs exactly the
migrations between the two versions, before rendering (shown with a throwaway
template version that registers its own)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from copier_runner import copier_cli, copy_template  # noqa: F401 (copier_cli: fixture)
from support import REPO, default_answers

from rezolus_sampler.spec import model
from rezolus_sampler.spec.migrations import MIGRATIONS
from rezolus_sampler.tree.update import migrate_file

GIT = ["git", "-c", "user.email=t@example.com", "-c", "user.name=test"]
OLD_FORMS = Path(__file__).parent / "migrations"


def entry(version: str) -> dict:
    """The copier.yml `_migrations` entry of the migration to `version`."""
    return {
        "version": version,
        "when": "{{ _stage == 'before' }}",
        "command": [
            "{{ _copier_python }}", "{{ _copier_conf.src_path }}/hooks/update.py", "migrate",
            "--root", "{{ _copier_conf.dst_path }}", "--answers",
            "{{ _copier_conf.answers_file }}", "--version", "{{ _version_current }}",
        ],
    }


def test_copier_yml_wires_every_migration_and_the_conflict_check():
    entries = yaml.safe_load((REPO / "copier.yml").read_text())["_migrations"]
    versioned = [e for e in entries if "version" in e]
    assert versioned == [entry(v) for v in MIGRATIONS], "copier.yml and the registry disagree"
    after = [e for e in entries if "version" not in e]
    assert len(after) == 1 and after[0]["when"] == "{{ _stage == 'after' }}"
    assert after[0]["command"][1:3] == ["{{ _copier_conf.src_path }}/hooks/update.py", "check"]


@pytest.mark.parametrize("version", list(MIGRATIONS) or [pytest.param(None, marks=pytest.mark.skip(
    reason="no answers migration registered yet (0.2.0 reads what 0.1.0 wrote)"))])
def test_each_migration_turns_its_old_form_into_valid_answers(version, tmp_path):
    old = OLD_FORMS / version / "old.yml"
    assert old.is_file(), f"migration {version} needs an old-form answers file at {old}"
    answers = tmp_path / ".copier-answers.yml"
    shutil.copy(old, answers)
    migrate_file(answers, version)
    migrated = answers.read_text()
    model.build(yaml.safe_load(migrated))  # raises SpecError when the result is invalid
    migrate_file(answers, version)
    assert answers.read_text() == migrated, "a migration must be idempotent"


THROWAWAY = '''

import os as _os


def _ran(version):
    with open(_os.environ["MIGRATION_LOG"], "a") as log:
        log.write(version + "\\n")


@migration("9.0.0")
def _not_after_9_0_0(answers):  # the version updated from: must not run
    _ran("9.0.0")
    answers["description"] = "wrong"
    return answers


@migration("9.1.0")
def _descriptions_end_with_a_period(answers):
    _ran("9.1.0")
    answers["description"] = answers["description"].rstrip(".") + "."
    return answers
'''


def git(cwd: Path, *args: str) -> None:
    subprocess.run(GIT + list(args), cwd=cwd, check=True, capture_output=True)


def test_update_runs_the_migrations_between_the_versions(tree, tmp_path, copier_cli):
    repo = copy_template(tmp_path / "template")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "9.0.0")
    git(repo, "tag", "v9.0.0")
    registry = repo / "rezolus_sampler/spec/migrations.py"
    registry.write_text(registry.read_text() + THROWAWAY)
    config = repo / "copier.yml"
    entries = yaml.safe_dump([entry("9.0.0"), entry("9.1.0")], sort_keys=False, width=1000)
    config.write_text(config.read_text().replace(
        "_migrations:\n", "_migrations:\n" + "".join(f"  {line}\n" for line in entries.splitlines()), 1))
    git(repo, "commit", "-qam", "9.1.0: descriptions end with a period")
    git(repo, "tag", "v9.1.0")

    answers = default_answers() | {"description": "Counts process events"}
    data = tmp_path / "a.yml"
    data.write_text(yaml.safe_dump(answers))
    result = copier_cli(tree, "copy", "--trust", "--defaults", "--data-file", str(data),
                        "--vcs-ref", "v9.0.0", str(repo), ".")
    assert result.returncode == 0, result.output
    git(tree, "add", "-A")
    git(tree, "commit", "-qm", "sampler at 9.0.0")

    log = tmp_path / "ran.txt"
    answers_file = "src/agent/samplers/scheduler/linux/processes/.copier-answers.yml"
    # what a CI job runs: exit 2 while a newer release exists, 0 once updated
    check = ("check-update", "--quiet", "-a", answers_file, ".")
    assert copier_cli(tree, *check).returncode == 2
    result = copier_cli(tree, "update", "--trust", "--defaults", "-a", answers_file,
                        env={"MIGRATION_LOG": str(log)})
    assert result.returncode == 0, result.output
    assert log.read_text() == "9.1.0\n"
    git(tree, "add", "-A")
    git(tree, "commit", "-qm", "updated to 9.1.0")
    assert copier_cli(tree, *check).returncode == 0
    recorded = yaml.safe_load((tree / answers_file).read_text())
    assert recorded["_commit"] == "v9.1.0"
    assert recorded["description"] == "Counts process events."
    sampler = tree / "src/agent/samplers/scheduler/linux/processes"
    assert "Counts process events." in (sampler / "mod.rs").read_text()
    # registration follows the migrated description
    toml = (tree / "config/agent.toml").read_text()
    assert "# Counts process events.\n[samplers.scheduler_processes]\n" in toml
