"""Where a sampler lives in a Rezolus tree: one definition for the rooms that
edit the tree and the audit that reads it."""

from __future__ import annotations

from pathlib import Path

SAMPLERS = Path("src") / "agent" / "samplers"


def sampler_dir(root: Path, group: str, sampler: str) -> Path:
    return Path(root) / SAMPLERS / group / "linux" / sampler
