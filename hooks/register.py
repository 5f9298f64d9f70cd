"""Copier's task (`_tasks` in copier.yml): register the rendered sampler in the
Rezolus tree, with this template clone's own `rezolus_sampler` (the work is
`rezolus_sampler.tree.register.run`: it joins the rollback journal the
preflight began, and undoes the whole copy when registration fails)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rezolus_sampler.tree.register import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run())
