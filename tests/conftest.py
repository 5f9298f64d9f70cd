import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import make_tree, rezolus_dir  # noqa: E402


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A scratch git copy of the Rezolus tree."""
    if rezolus_dir() is None:
        pytest.skip("no Rezolus checkout: set REZOLUS_DIR or place it at ../shared/rezolus")
    return make_tree(tmp_path / "rezolus")


def require_tool(name: str) -> None:
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed (make test installs it as root)")
