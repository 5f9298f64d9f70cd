"""Copier's Jinja extension (`_jinja_extensions` in copier.yml).

The template's globals live in `rezolus_sampler.copier_glue`, and the code
behind a template must be that template clone's own: `copier update` renders
the old and the new version of the template in one process, from two
temporary clones. So this clone's root goes first on `sys.path`, and a
`rezolus_sampler` imported earlier from other code (another version) is
forgotten; one with the same content (a test process, say) is kept.
"""

import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _content(package: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


_loaded = sys.modules.get("rezolus_sampler")
if _loaded is not None:
    _there = Path(_loaded.__file__).resolve().parent
    if _there != ROOT / "rezolus_sampler" and _content(_there) != _content(ROOT / "rezolus_sampler"):
        for _name in [n for n in sys.modules if n.split(".")[0] == "rezolus_sampler"]:
            del sys.modules[_name]
if sys.path[:1] != [str(ROOT)]:
    sys.path.insert(0, str(ROOT))

from rezolus_sampler.copier_glue import SamplerExtension  # noqa: E402,F401
