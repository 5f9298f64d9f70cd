import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import CASES, make_tree, render, require_rezolus, rezolus_dir, sampler_path  # noqa: E402


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A scratch git copy of the Rezolus tree."""
    require_rezolus()
    return make_tree(tmp_path / "rezolus")


def require_tool(name: str) -> None:
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed (make test installs it as root)")


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """One tree holding every case, as many samplers share one Rezolus checkout."""
    require_rezolus()
    tree = make_tree(tmp_path_factory.mktemp("render") / "rezolus")
    dirs = {}
    for case, answers in CASES.items():
        # a reproduction named like a hand-written sampler replaces it in place
        render(tree, answers, overwrite=sampler_path(rezolus_dir(), answers).exists())
        dirs[case] = sampler_path(tree, answers)
    return tree, dirs
