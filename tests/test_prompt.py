"""The questionnaires, driven in a real pseudo-terminal (pexpect) as a user would.

- plain `copier copy` of a sampler none of the examples describe (signal
  delivery, a computed 32-value label with an overflow value), recovering
  from an empty name, a mistyped tracepoint, invalid YAML and a wrong argument
  name at the prompt; then the proof command counts what it generated;
- the same sampler through `rezolus-sampler new` (questionary);
- classic tracepoint attach, a bare field name corrected to args->field;
- an interactive `copier update` that changes the tracepoints and the attach
  style of that classic sampler;
- a validator's refusal is shown whole under the prompt, not cut at 80 columns.

Each runs against a git copy of this template (copier_runner.template_repo) so
the recorded `_commit` exists when `copier update` looks for it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from copier_runner import template_repo
from support import default_answers, make_tree, require_rezolus, tree_snapshot
from test_prove import _BPF_OK as BPF_OK
from test_prove import delta, prove

pexpect = pytest.importorskip("pexpect")

GIT = ["git", "-c", "user.email=t@example.com", "-c", "user.name=test"]
ENTER, SUBMIT, BACKSPACE, KILL_LINE, DOWN = "\r", "\x1b\r", "\x7f", "\x15", "\x1b[B"
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"
SIGNALS = 120  # SIGUSR1 sent to itself by the proof workload
SEND_SIGNALS = (
    f"{sys.executable} -c 'import os, signal; signal.signal(signal.SIGUSR1, lambda *a: None); "
    f"[os.kill(os.getpid(), signal.SIGUSR1) for _ in range({SIGNALS})]'"
)

# The sampler of the first two tests: signal delivery by signal number (the
# tracepoint's plain `int sig`, 32 values, out-of-range numbers counted as 31)
# and signal generation by result.
COUNTERS = """\
- name: signal_delivered
  description: Signals delivered, by signal number
  unit: signals
  labels: {sig: {values: 32, overflow: 31}}
  increments:
    - at: signal:signal_deliver
      index: {sig: %s}
- name: signal_generated
  description: Signals generated, by result
  unit: signals
  labels: {result: [delivered, ignored, pending, overflow, lose_info]}
  increments:
    - at: signal:signal_generate
      index: {result: result}"""


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return template_repo(tmp_path_factory.mktemp("template") / "rezolus-sampler")


@pytest.fixture
def tree(tmp_path) -> Path:
    require_rezolus()
    return make_tree(tmp_path / "rezolus")


class Terminal:
    """A program in a pseudo-terminal of 50 x 160, and the keys a user presses."""

    def __init__(self, argv: list[str], cwd: Path, columns: int = 160):
        env = dict(os.environ, TERM="xterm", PYTHONWARNINGS="ignore")
        self.child = pexpect.spawn(
            argv[0], argv[1:], cwd=str(cwd), env=env, encoding="utf-8", timeout=90,
            dimensions=(50, columns),
        )  # fmt: skip
        if os.environ.get("REZOLUS_SAMPLER_PTY_LOG"):  # what the terminal received, for debugging
            self.child.logfile_read = open(os.environ["REZOLUS_SAMPLER_PTY_LOG"], "a")  # noqa: SIM115

    def expect(self, text: str) -> None:
        self.child.expect(re.escape(text))

    def answer(self, text: str, clear: int = 0) -> None:
        """Replace what the prompt shows (its default) with `text`, press Enter."""
        self.child.send(BACKSPACE * clear + text + ENTER)

    def confirm(self, yes: bool) -> None:
        """A yes/no question takes one key, no Enter."""
        self.child.send("y" if yes else "n")

    def yaml(self, text: str, clear: int = 40) -> None:
        """Type a multi-line YAML answer over the last `clear` lines of what the
        prompt shows (Ctrl-U empties a line, Backspace joins it to the one
        above), then submit it (Esc, Enter)."""
        self.child.send((KILL_LINE + BACKSPACE) * clear)
        self.paste(text)
        self.child.send(SUBMIT)

    def paste(self, text: str) -> None:
        """As a terminal pastes (bracketed paste): typed line by line, the
        prompt would copy each line's indentation to the next."""
        self.child.send(PASTE_START + text + PASTE_END)

    def copier_defaults_until_counters(self) -> None:
        """Copier's questions between the description and the counters, left at
        their defaults (no histograms)."""
        self.expect("Year for the SPDX")
        self.answer("")
        self.expect("How counters are read")
        self.answer("")
        self.expect("Optional YAML list of histogram families")
        self.yaml("[]", clear=2)

    def finish(self) -> str:
        self.child.expect(pexpect.EOF, timeout=180)
        self.child.close()
        return self.child.before

    @property
    def status(self) -> int | None:
        return self.child.exitstatus


def copier(*args: str) -> list[str]:
    return [sys.executable, "-m", "copier", *args]


def git_commit(tree: Path, message: str) -> None:
    subprocess.run(GIT + ["add", "-A"], cwd=tree, check=True)
    subprocess.run(GIT + ["commit", "-qm", message], cwd=tree, check=True)


def sampler(tree: Path, group: str, name: str) -> Path:
    return tree / "src" / "agent" / "samplers" / group / "linux" / name


def _prove_signals(directory: Path) -> None:
    report, _ = prove(directory, "--command", SEND_SIGNALS)
    assert delta(report, "signal_delivered{sig=10}") == SIGNALS  # SIGUSR1
    assert delta(report, "signal_generated{result=delivered}") >= SIGNALS


def test_copier_copy_interactive_any_sampler(template, tree):
    t = Terminal(copier("copy", "--trust", str(template), "."), tree)
    t.expect("Sampler group")
    t.answer("signal", clear=20)
    t.expect("Sampler name within the group")
    t.answer("")  # no default outside the default group: refused at the prompt
    t.expect("give the sampler a name")
    t.answer("deliveries")
    t.expect("How programs attach")
    t.answer("")  # tp_btf
    t.expect("YAML list of tracepoints")
    t.yaml("- signal:signal_deliver(sig, info, ka)\n- signal:signal_generat")
    t.expect("did you mean signal_generate")
    t.yaml("e(sig, info, task, grp, result)", clear=0)
    t.expect("One line for the module doc")
    t.answer("")  # derived from the tracepoints
    t.copier_defaults_until_counters()
    t.expect("YAML list of counter families")
    t.expect("int sig")  # the help shows the chosen hooks' typed arguments
    t.yaml(COUNTERS % "sig" + "\n      when: sig > 0 ? 1 : 0")  # unquoted ': ' is not YAML
    t.expect("not valid YAML at line")
    t.yaml(COUNTERS % "sgi")  # a wrong argument name
    t.expect("did you mean sig?")
    t.yaml(COUNTERS % "sig")
    out = t.finish()
    assert t.status == 0, out
    assert "Sampler signal_deliveries written" in out
    directory = sampler(tree, "signal", "deliveries")
    answers = yaml.safe_load((directory / ".copier-answers.yml").read_text())
    assert answers["description"] == "Counts deliver and generate events"
    assert answers["counters"][0]["labels"] == {"sig": {"values": 32, "overflow": 31}}
    assert 'SEC("tp_btf/signal_deliver")' in (directory / "mod.bpf.c").read_text()
    assert "signal_deliveries" in (tree / "config" / "agent.toml").read_text()
    if BPF_OK:
        _prove_signals(directory)


def test_guided_new_any_sampler(template, tree):
    t = Terminal([sys.executable, "-m", "rezolus_sampler.cli", "new", "--template", str(template)], tree)
    t.expect("Group")
    t.answer("signal")
    t.expect("Sampler name within signal")
    t.answer("deliveries")
    t.expect("How should the programs attach")
    t.answer("")  # tp_btf, the first choice
    t.expect("Tracepoint")
    t.answer("signal:signal_delivr")  # mistyped: refused while typed, fixed in place
    t.expect("did you mean signal_deliver")
    t.answer(BACKSPACE + "er")
    t.expect("int arg0")  # the typed arguments, shown once chosen
    t.expect("Argument names in order")
    t.answer("sig, info, ka", clear=40)
    t.expect("Add another tracepoint?")
    t.confirm(True)
    t.expect("Tracepoint")
    t.answer("signal_generate")  # the category is found
    t.expect("Argument names in order")
    t.answer("sig, info, task, grp, result", clear=60)
    t.expect("Add another tracepoint?")
    t.confirm(False)
    t.expect("One-line description")
    t.answer("")
    t.expect("Count events with a counter family?")
    t.confirm(True)
    t.expect("Metric name of the counter family")
    t.answer("signal_delivered", clear=40)
    t.expect("What it measures")
    t.answer("Signals delivered, by signal number", clear=60)
    t.expect("Unit")
    t.answer("signals", clear=10)
    t.expect("Label the counts by tracepoint")
    t.confirm(False)
    t.expect("Add a label to signal_delivered?")
    t.confirm(True)
    t.expect("Label name")
    t.answer("sig")
    t.expect("Values of sig")
    t.answer("32")
    t.expect("Add a label to signal_delivered?")
    t.confirm(False)
    t.expect("Count signal_delivered at signal:signal_deliver?")
    t.confirm(True)
    t.expect("At signal:signal_deliver, sig is")
    t.answer("")  # computed
    t.expect("Index of sig at signal:signal_deliver")
    t.answer("sgi")  # a wrong argument name, refused as typed
    t.expect("did you mean sig?")
    t.answer(BACKSPACE * 3 + "sig")
    t.expect("An index of sig outside 0..31")
    t.child.send(DOWN + ENTER)  # counts as 31
    t.expect("Only when")
    t.answer("")
    t.expect("Add how much")
    t.answer("")
    t.expect("Count signal_delivered at signal:signal_generate?")
    t.confirm(False)
    t.expect("Add another counter family?")
    t.confirm(True)
    t.expect("Metric name of the counter family")
    t.answer("signal_generated", clear=40)
    t.expect("What it measures")
    t.answer("Signals generated, by result")
    t.expect("Unit")
    t.answer("signals", clear=10)
    t.expect("Add a label to signal_generated?")
    t.confirm(True)
    t.expect("Label name")
    t.answer("result")
    t.expect("Values of result")
    t.answer("delivered, ignored, pending, overflow, lose_info")
    t.expect("Add a label to signal_generated?")
    t.confirm(False)
    t.expect("Count signal_generated at signal:signal_deliver?")
    t.confirm(False)
    t.expect("Count signal_generated at signal:signal_generate?")
    t.confirm(True)
    t.expect("At signal:signal_generate, result is")
    t.answer("")
    t.expect("Index of result at signal:signal_generate")
    t.answer("result")
    t.expect("An index of result outside 0..4")
    t.answer("")  # dropped
    t.expect("Only when")
    t.answer("")
    t.expect("Add how much")
    t.answer("")
    t.expect("Add another counter family?")
    t.confirm(False)
    t.expect("Add a histogram family")
    t.confirm(False)
    t.expect("How are counters read?")
    t.answer("")
    t.expect("map counters: 37 slot(s), W = roundup(37, 8) = 40")  # the layout, before writing
    t.expect("Write signal_deliveries into")
    t.confirm(True)
    out = t.finish()
    assert t.status == 0, out
    directory = sampler(tree, "signal", "deliveries")
    answers = yaml.safe_load((directory / ".copier-answers.yml").read_text())
    assert answers["tracepoints"] == [
        "signal:signal_deliver(sig, info, ka)",
        "signal:signal_generate(sig, info, task, grp, result)",
    ]
    assert answers["counters"][0]["labels"] == {"sig": {"values": 32, "overflow": "31"}}
    assert answers["_src_path"] == str(template)  # copier update -a works as after copier copy
    if BPF_OK:
        _prove_signals(directory)


def test_guided_new_histogram_with_a_computed_label(template, tree):
    """A value histogram through `rezolus-sampler new`, labelled by a computed index:
    the index is checked as typed before the value is asked (it used to be refused
    for lacking the value), the unit follows the metric name."""
    t = Terminal([sys.executable, "-m", "rezolus_sampler.cli", "new", "--template", str(template)], tree)
    t.expect("Group")
    t.answer("blockio")
    t.expect("Sampler name within blockio")
    t.answer("requests")  # hand-written: refused, with what to do instead
    t.expect("hand-written; to count more at its hooks, add to it instead")
    t.answer(BACKSPACE * 8 + "issue_sizes")
    t.expect("How should the programs attach")
    t.answer("")
    t.expect("Tracepoint")
    t.answer("block:block_rq_issue")
    t.expect("already attached by blockio_latency")  # P3, said before anything is written
    t.expect("Argument names in order")
    t.answer("")
    t.expect("Add another tracepoint?")
    t.confirm(False)
    t.expect("One-line description")
    t.answer("Sizes of issued block requests", clear=60)
    t.expect("Count events with a counter family?")
    t.confirm(False)
    t.expect("Add a histogram family")
    t.confirm(True)
    t.expect("Metric name of the histogram family")
    t.answer("blockio_issue_sizes_bytes", clear=60)
    t.expect("What it measures")
    t.answer("The size of issued block requests")
    t.expect("Unit")
    t.expect("bytes")  # from the name
    t.answer("")
    t.expect("Add a label to blockio_issue_sizes_bytes?")
    t.confirm(True)
    t.expect("Label name")
    t.answer("op")
    t.expect("Values of op")
    t.answer("read, write, flush, discard")
    t.expect("Add a label to blockio_issue_sizes_bytes?")
    t.confirm(False)
    t.expect("Record blockio_issue_sizes_bytes at block:block_rq_issue?")
    t.confirm(True)
    t.expect("At block:block_rq_issue, op is")
    t.answer("")  # computed
    t.expect("Index of op at block:block_rq_issue")
    t.answer("rq->cmd_flag & 0xff")
    t.expect("mean cmd_flags, rq_flags")  # the toolbar wraps the message
    t.answer(BACKSPACE * 7 + "s & 0xff")
    t.expect("An index of op outside 0..3")
    t.answer("")  # dropped
    t.expect("records:")
    t.answer("")  # a value
    t.expect("Value (an expression")
    t.answer("rq->__data_len")
    t.expect("Only when")
    t.answer("")
    t.expect("Add another histogram family?")
    t.confirm(False)
    t.expect("Write blockio_issue_sizes into")
    t.confirm(True)
    out = t.finish()
    assert t.status == 0, out
    directory = sampler(tree, "blockio", "issue_sizes")
    answers = yaml.safe_load((directory / ".copier-answers.yml").read_text())
    (family,) = answers["histograms"]
    assert family["unit"] == "bytes"
    assert family["records"] == [{"at": "block:block_rq_issue", "index": {"op": "rq->cmd_flags & 0xff"},
                                  "value": "rq->__data_len"}]
    if BPF_OK:
        report, _ = prove(directory, "--workload", "block", "--count", "50", "--size", "3584")
        write = next(h for h in report["histograms"] if h["key"] == "blockio_issue_sizes_bytes{op=write}")
        assert write["count"] >= 50, write


def test_classic_copy_then_update_to_tp_btf(template, tree):
    t = Terminal(copier("copy", "--trust", str(template), "."), tree)
    t.expect("Sampler group")
    t.answer("signal", clear=20)
    t.expect("Sampler name within the group")
    t.answer("generated")
    t.expect("How programs attach")
    t.answer("tracepoint", clear=10)
    t.expect("YAML list of tracepoints")
    t.yaml("- signal:signal_generate")
    t.expect("One line for the module doc")
    t.answer("Counts generated signals", clear=80)
    t.copier_defaults_until_counters()
    t.expect("args->sig")  # the help lists the record's fields
    counters = """\
- name: signal_generated_total
  description: Signals generated
  labels: {sig: {values: 32, overflow: 31}}
  increments:
    - at: signal:signal_generate
      index: {sig: %s}"""
    t.yaml(counters % "sig")  # a bare field name
    t.expect("did you mean args->sig?")
    t.yaml(counters % "args->sig")
    out = t.finish()
    assert t.status == 0, out
    directory = sampler(tree, "signal", "generated")
    assert 'SEC("tracepoint/signal/signal_generate")' in (directory / "mod.bpf.c").read_text()
    if BPF_OK:
        report, _ = prove(directory, "--command", SEND_SIGNALS)
        assert delta(report, "signal_generated_total{sig=10}") == SIGNALS
    git_commit(tree, "classic sampler")

    # copier update: tp_btf now, and a second tracepoint; the recorded counters
    # still fit (the hook keeps its name), so Copier offers them again
    answers = ".copier-answers.yml"
    t = Terminal(copier("update", "--trust", "-a", str(directory.relative_to(tree) / answers)), tree)
    t.expect("Sampler group")
    t.answer("")
    t.expect("Sampler name within the group")
    t.answer("")
    t.expect("How programs attach")
    t.answer("tp_btf", clear=12)
    t.yaml("- signal:signal_generate(sig, info, task, grp, result)\n- signal:signal_deliver(sig)")
    t.expect("One line for the module doc")
    t.answer("")
    t.copier_defaults_until_counters()
    t.expect("YAML list of counter families")
    t.yaml(counters % "sig" + "\n    - at: signal:signal_deliver\n      index: {sig: sig}")
    out = t.finish()
    assert t.status == 0, out
    source = (directory / "mod.bpf.c").read_text()
    assert 'SEC("tp_btf/signal_generate")' in source and 'SEC("raw_tp/signal_deliver")' in source
    assert "tracepoint/" not in source
    recorded = yaml.safe_load((directory / answers).read_text())
    assert recorded["attach"] == "tp_btf" and len(recorded["tracepoints"]) == 2
    status = subprocess.run(["git", "status", "--short"], cwd=tree, capture_output=True, text=True).stdout
    assert "UU" not in status and "<<<<<<<" not in source, status
    if BPF_OK:
        report, _ = prove(directory, "--command", SEND_SIGNALS)
        assert delta(report, "signal_generated_total{sig=10}") == 2 * SIGNALS  # generated + delivered


def test_refusal_is_shown_whole_at_80_columns(template, tree):
    before = tree_snapshot(tree)
    t = Terminal(copier("copy", "--trust", str(template), "."), tree, columns=80)
    t.expect("Sampler group")
    t.answer("scheduler", clear=20)
    t.expect("Sampler name within the group")
    t.answer("x" * 3 + "_runqueue_" + "y" * 40, clear=20)
    t.expect("the limit is")  # the end of a message longer than one row
    t.child.sendcontrol("c")
    t.finish()
    assert tree_snapshot(tree) == before, "an aborted questionnaire wrote files"


def test_existing_sampler_is_refused_at_the_name_prompt(template, tree):
    t = Terminal(copier("copy", "--trust", str(template), "."), tree)
    t.expect("Sampler group")
    t.answer("scheduler", clear=20)
    t.expect("Sampler name within the group")
    t.answer("runqueue", clear=20)  # Rezolus' own scheduler/runqueue
    t.expect("choose another name: src/agent/samplers/scheduler/linux/runqueue exists")
    t.child.sendcontrol("c")
    t.finish()


def test_defaults_are_the_documented_sampler(template, tree):
    t = Terminal(copier("copy", "--trust", "--defaults", str(template), "."), tree)
    out = t.finish()
    assert t.status == 0, out
    recorded = yaml.safe_load((sampler(tree, "scheduler", "processes") / ".copier-answers.yml").read_text())
    want = default_answers()
    assert {k: recorded[k] for k in want} == want
