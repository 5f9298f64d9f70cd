"""docs/tutorial.md, executed: every command, in order, in a temporary Rezolus tree.

The tutorial's commands are the `$ ` lines of its ```console blocks; the lines
after a command are output the command must print, in that order (other lines
may come between). In those lines `…` stands for anything (timings, versions)
and runs of spaces match any spacing. A command whose lines include `? `
prompts is interactive: it runs in a pseudo-terminal and each `? <question>
<answer>` line is answered as a user would (a yes/no key, arrow keys to the
shown choice, or the text typed over the default). A ```yaml block after
`<!-- file: NAME -->` is written to NAME before the next command. A command
anywhere else in the tutorial (a shell block, a `$ ` line outside a console
block) fails this test: every command the tutorial shows is run here.

`REZOLUS_SAMPLER_TUTORIAL_RECORD=1` prints each command's real output instead
of comparing, to write the tutorial from.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from copier_runner import template_repo
from support import REPO, make_tree, require_rezolus
from test_prove import _BPF_OK, _BPF_WHY

pexpect = pytest.importorskip("pexpect")

TUTORIAL = REPO / "docs" / "tutorial.md"
RECORD = bool(os.environ.get("REZOLUS_SAMPLER_TUTORIAL_RECORD"))
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-B]|\x07|\r")
ENTER, BACKSPACE, DOWN = "\r", "\x7f", "\x1b[B"


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # written before the command
    line: int = 0

    @property
    def interactive(self) -> bool:
        return any(line.startswith("? ") for line in self.expected)


def parse(text: str) -> list[Step]:
    """The tutorial's steps; refuses a command outside a console block."""
    steps: list[Step] = []
    pending: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^```(\w*)", line)
        if not fence:
            assert not line.startswith("$ "), f"tutorial line {i + 1}: a command outside a console block"
            i += 1
            continue
        kind, start = fence.group(1), i
        body = []
        i += 1
        while not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        name = re.search(r"<!-- file: (\S+) -->", "\n".join(lines[max(0, start - 2) : start]))
        if name:
            pending[name.group(1)] = "\n".join(body) + "\n"
            continue
        if kind != "console":
            assert kind not in ("sh", "shell", "bash", "zsh"), (
                f"tutorial line {start + 1}: a {kind} block; commands go in console blocks, "
                f"where this test runs them"
            )
            assert not any(b.startswith("$ ") for b in body), f"tutorial line {start + 1}: commands outside a console block"
            continue
        for n, b in enumerate(body):
            if b.startswith("$ "):
                steps.append(Step(b[2:], files=pending, line=start + 2 + n))
                pending = {}
            elif steps and steps[-1].command.endswith("\\"):
                steps[-1].command = steps[-1].command[:-1] + b.strip()
            else:
                assert steps, f"tutorial line {start + 2 + n}: output before any command"
                steps[-1].expected.append(b)
    return steps


def pattern(line: str) -> re.Pattern:
    parts = [re.escape(p) for p in line.strip().split("…")]
    text = ".*".join(parts)
    text = re.sub(r"(\\ )+", r"\\s+", text)
    return re.compile(text)


def check_output(step: Step, output: str) -> None:
    """Each shown line appears in the output, in order."""
    got = [ANSI.sub("", line).rstrip() for line in output.splitlines()]
    at = 0
    for shown in step.expected:
        if not shown.strip() or shown.strip() == "…" or shown.startswith("? "):
            continue
        regex = pattern(shown)
        for k in range(at, len(got)):
            if regex.search(got[k]):
                at = k + 1
                break
        else:
            context = "\n".join(got[max(0, at - 3) : at + 25])
            raise AssertionError(
                f"tutorial line {step.line}: `{step.command}` did not print\n  {shown}\n"
                f"after what matched so far; it printed (from there):\n{context}"
            )


def question_and_answer(line: str) -> tuple[str, str]:
    """'? Message: answer' -> (message, answer): the message ends at the first ': ' or '? '."""
    body = line[2:].rstrip()
    ends = [m.end() for m in re.finditer(r"[:?] ", body)]
    if not ends:  # an empty answer (Enter alone)
        assert body.endswith((":", "?")), f"cannot split prompt line {line!r}"
        return body[:-1], ""
    return body[: ends[0] - 1], body[ends[0] :].strip()


def drain(child, wait: float = 0.5) -> str:
    """What the terminal received in the next `wait` seconds."""
    out = [child.buffer]  # what arrived with the last match but was not part of it
    child.buffer = ""
    deadline = time.time() + wait
    while time.time() < deadline:
        try:
            out.append(child.read_nonblocking(100000, timeout=max(0.05, deadline - time.time())))
        except pexpect.TIMEOUT:
            break
    return ANSI.sub("", "".join(out))


def run_interactive(step: Step, cwd: Path, env: dict) -> str:
    child = pexpect.spawn("bash", ["-c", step.command], cwd=str(cwd), env=env, encoding="utf-8",
                          timeout=120, dimensions=(60, 200))  # fmt: skip
    if os.environ.get("REZOLUS_SAMPLER_PTY_LOG"):  # what the terminal received, for debugging
        child.logfile_read = open(os.environ["REZOLUS_SAMPLER_PTY_LOG"], "a")  # noqa: SIM115
    transcript = []
    for shown in step.expected:
        if not shown.startswith("? "):
            continue
        question, answer = question_and_answer(shown)
        child.expect(".*?".join(re.escape(part) for part in question.split("…")))
        transcript.append(child.before + child.after)
        drawn = drain(child)  # the rest of the prompt: choices, default
        transcript.append(drawn)
        if answer in ("Yes", "No"):
            child.send("y" if answer == "Yes" else "n")
            continue
        if "(Use arrow keys)" in drawn:
            for _ in range(60):
                if re.search(r"» " + re.escape(answer[:30]), drawn):
                    break
                child.send(DOWN)
                drawn = drain(child)
            else:
                raise AssertionError(f"tutorial line {step.line}: no choice {answer!r} for {question!r}")
            child.send(ENTER)
            continue
        child.send(BACKSPACE * 120 + answer)
        time.sleep(0.3)  # completion menus settle before Enter
        child.send(ENTER)
    child.expect(pexpect.EOF, timeout=180)
    child.close()
    assert child.exitstatus == 0, f"tutorial line {step.line}: `{step.command}` exited {child.exitstatus}"
    return "".join(transcript) + child.before


@pytest.fixture
def workspace(tmp_path) -> tuple[Path, dict]:
    require_rezolus()
    template = template_repo(tmp_path / "rezolus-sampler")
    tree = make_tree(tmp_path / "rezolus")
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        REZOLUS_SAMPLER_TEMPLATE=str(template),
        GIT_AUTHOR_NAME="Tutorial", GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="Tutorial", GIT_COMMITTER_EMAIL="t@example.com",
        TERM="xterm", PYTHONWARNINGS="ignore", COLUMNS="200",
    )  # fmt: skip
    return tree, env


def test_tutorial_parses_into_commands():
    steps = parse(TUTORIAL.read_text())
    commands = [s.command for s in steps]
    assert any(c.startswith("rezolus-sampler tracepoints") for c in commands)
    assert any(s.interactive and s.command.startswith("rezolus-sampler new") for s in steps)
    assert any(c.startswith("rezolus-sampler prove") for c in commands)
    assert any(c.startswith("copier update") for c in commands)
    assert any(c.startswith("rezolus-sampler audit") for c in commands)


def test_parse_refuses_a_command_outside_console_blocks():
    with pytest.raises(AssertionError, match="console"):
        parse("Run this:\n\n```sh\nrezolus-sampler new\n```\n")
    with pytest.raises(AssertionError, match="outside a console block"):
        parse("$ rezolus-sampler new\n")


def test_tutorial_runs_as_written(workspace):
    tree, env = workspace
    skipped = []
    for step in parse(TUTORIAL.read_text()):
        for name, content in step.files.items():
            (tree / name).write_text(content)
        if step.command.startswith("rezolus-sampler prove") and not _BPF_OK:
            skipped.append(step.command)
            continue
        if step.interactive:
            output = run_interactive(step, tree, env)
        else:
            proc = subprocess.run(["bash", "-c", step.command], cwd=tree, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)  # fmt: skip
            output = proc.stdout
            assert proc.returncode == 0 or RECORD, (
                f"tutorial line {step.line}: `{step.command}` exited {proc.returncode}:\n{output}"
            )
        if RECORD:
            print(f"\n$ {step.command}\n{ANSI.sub('', output)}")
            continue
        check_output(step, output)
    if skipped:
        pytest.skip(f"ran the tutorial except {len(skipped)} proof command(s): {_BPF_WHY}")


def test_output_check_is_ordered_and_exact_but_for_ellipses():
    step = Step("cmd", ["total   …", "signal{sig=10}    100", "…", "done"])
    check_output(step, "header\ntotal 12.5 s\nsignal{sig=10} 100\nother\ndone\n")
    for wrong in ("total 1\nsignal{sig=10} 101\ndone", "done\ntotal 1\nsignal{sig=10} 100"):
        with pytest.raises(AssertionError, match="did not print"):
            check_output(step, wrong)


def test_readme_session_is_the_tutorials():
    """README's "Start here" shows the tutorial's guided session: the same questions
    and answers (the tutorial's run checks them against the real command)."""
    readme = (REPO / "README.md").read_text()
    block = readme[readme.index("$ rezolus-sampler new") : readme.index("Sampler signal_deliveries written")]
    shown = [line.strip() for line in block.splitlines() if line.strip().startswith("? ")]
    step = next(s for s in parse(TUTORIAL.read_text()) if s.interactive)
    asked = [line.strip() for line in step.expected if line.startswith("? ")]
    assert [question_and_answer(q) for q in shown[:-1]] == [question_and_answer(q) for q in asked[:-1]]
    assert shown[-1].startswith("? Write signal_deliveries into ") and shown[-1].endswith("? Yes")
