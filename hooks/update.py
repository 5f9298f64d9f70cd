"""Copier's `_migrations` entries (copier.yml), with this template clone's own
`rezolus_sampler`:

    update.py migrate --answers FILE --version V   (stage before, version-gated)
        rewrite the answers file in the form of template version V
    update.py check                                 (stage after, every update)
        exit 1 with a banner when the update left conflicts
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rezolus_sampler.tree.update import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
