"""Render with pytest-copie, outside any Rezolus tree: the files render and the
registration task is a no-op that says so (as in Copier's temporary update copies)."""

from __future__ import annotations

import pytest
from support import REPO, default_answers


@pytest.mark.parametrize("attach", ["tp_btf", "raw_tp"])
@pytest.mark.parametrize("layout", ["totals", "per_cpu"])
def test_renders_outside_a_rezolus_tree(copie, attach, layout, capfd):
    result = copie.copy(extra_answers=default_answers() | {"attach": attach, "layout": layout},
                        template_dir=REPO)
    assert result.exception is None, result.exception
    assert result.exit_code == 0
    sampler = result.project_dir / "src/agent/samplers/scheduler/linux/processes"
    assert sorted(p.name for p in sampler.iterdir()) == [
        ".copier-answers.yml", "README.md", "mod.bpf.c", "mod.rs", "stats.rs"]
    assert "is not a Rezolus tree" in capfd.readouterr().out
    assert not (result.project_dir / "build.rs").exists()
