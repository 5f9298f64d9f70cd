"""pytest-copie: outside a Rezolus tree the copy is refused before anything is
written; into a Rezolus tree (a copie project that starts as a copy of one) the
template renders and registers for every attach style and layout."""

from __future__ import annotations

import pytest
from pytest_copie.plugin import Result
from support import REPO, default_answers, require_rezolus, rezolus_dir


def test_refused_outside_a_rezolus_tree(copie):
    result = copie.copy(extra_answers=default_answers(), template_dir=REPO)
    assert result.exit_code != 0
    message = str(result.exception)
    assert message.startswith("Refusing to render: ")
    assert "is not the root of a Rezolus checkout" in message
    for looked_for in ('Cargo.toml with [package] name = "rezolus"', "build.rs",
                       "src/agent/samplers/mod.rs"):
        assert looked_for in message
    assert not any(copie.test_dir.glob("copie*/*")), "something was written"


@pytest.mark.parametrize("attach", ["tp_btf", "raw_tp"])
@pytest.mark.parametrize("layout", ["totals", "per_cpu"])
def test_renders_into_a_rezolus_tree(copie, attach, layout):
    require_rezolus()
    # a child copie starts its project as a copy of the parent result's project
    into_tree = copie(parent_result=Result(project_dir=rezolus_dir(), exit_code=0),
                      child_tpl=REPO)
    result = into_tree.copy(extra_answers=default_answers() | {"attach": attach, "layout": layout},
                        template_dir=REPO)
    assert result.exception is None, result.exception
    assert result.exit_code == 0
    sampler = result.project_dir / "src/agent/samplers/scheduler/linux/processes"
    assert sorted(p.name for p in sampler.iterdir()) == [
        ".copier-answers.yml", "README.md", "mod.bpf.c", "mod.rs", "stats.rs"]
    assert '("scheduler", "processes"),' in (result.project_dir / "build.rs").read_text()
    assert not (result.project_dir / ".rezolus-sampler-journal.json").exists()
