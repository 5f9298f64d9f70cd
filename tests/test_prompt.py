"""The questionnaire refuses bad answers at the prompt, with the model's message,
and accepts the corrected answer (Copier in a pseudo-terminal)."""

from __future__ import annotations

import sys

import pytest
from support import REPO, tree_snapshot

pexpect = pytest.importorskip("pexpect")


def test_prompt_refuses_then_accepts(tree):
    before = tree_snapshot(tree)
    child = pexpect.spawn(
        sys.executable, ["-m", "copier", "copy", "--trust", "--vcs-ref", "HEAD", str(REPO), str(tree)],
        encoding="utf-8", timeout=60, dimensions=(50, 200),
    )
    child.expect("Sampler group")
    child.sendline("Bad-Group")
    child.expect("must be snake_case")
    # clear the rejected text, then give a good answer
    child.send("\x7f" * 20)
    child.sendline("widgets")
    child.expect("Sampler name within the group")
    child.sendline("")  # default: processes
    child.expect("One line for the module doc")
    child.send("\x7f" * 80)
    child.sendline('Counts "quoted" things')
    child.expect("build.rs metric parser")
    child.terminate(force=True)
    assert tree_snapshot(tree) == before, "an aborted questionnaire wrote files"
