"""The front-ends' parts that need no terminal: tracepoint discovery, every problem
of an answers file at once, how a refusal reads at a prompt, classic event
classes and the running kernel's record layout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import default_answers, make_tree, require_rezolus, tree_snapshot

from rezolus_sampler import prompting
from rezolus_sampler.spec import catalog, hooks, model, running
from rezolus_sampler.spec.problems import problems


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    require_rezolus()
    return make_tree(tmp_path_factory.mktemp("front") / "rezolus")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rezolus_sampler.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


# -- rezolus-sampler tracepoints


def test_tracepoints_lists_typed_arguments_and_record_fields(tree):
    found = {e.event: e for e in catalog.find("signal:", tree)}
    assert set(found) == {"signal_deliver", "signal_generate"}
    deliver = found["signal_deliver"]
    assert [a.spelling for a in deliver.args] == ["int", "struct kernel_siginfo *", "struct k_sigaction *"]
    assert deliver.record == "signal_deliver"
    assert [m.name for m in deliver.fields][:3] == ["sig", "errno", "code"]


def test_tracepoints_marks_hooks_other_samplers_attach(tree):
    proc = cli("tracepoints", "block:block_rq_complete", cwd=tree)
    assert proc.returncode == 0, proc.stderr
    assert "already attached by blockio_latency, blockio_requests" in proc.stdout
    data = json.loads(cli("tracepoints", "--json", "block:block_rq_complete", cwd=tree).stdout)
    assert data[0]["attached_by"] == ["blockio_latency", "blockio_requests"]


def test_tracepoints_glob_many_and_none(tree):
    many = cli("tracepoints", "sched:*", cwd=tree)
    assert many.returncode == 0 and "matches: narrow the pattern" in many.stdout
    none = cli("tracepoints", "no_such_event_anywhere", cwd=tree)
    assert none.returncode == 1 and "no tracepoint matches" in none.stdout
    outside = cli("tracepoints", "--tree", "/", "x", cwd=tree)
    assert outside.returncode == 2 and "not a Rezolus checkout" in outside.stderr


# -- classic tracepoints: event classes and the running kernel's record


def test_classic_event_class_is_found(tree):
    hook = model.check_hooks({"attach": "tracepoint", "tracepoints": ["tcp:tcp_retransmit_skb"]}, tree)[0]
    assert hook.raw_struct == "tcp_event_sk_skb"


def test_bare_field_name_gets_the_args_suggestion(tree):
    answers = default_answers() | {"attach": "tracepoint", "tracepoints": ["signal:signal_generate"], "counters": [
        {"name": "g", "description": "d", "labels": {"sig": 64},
         "increments": [{"at": "signal:signal_generate", "index": {"sig": "sig"}}]}]}  # fmt: skip
    with pytest.raises(model.SpecError, match=r"did you mean args->sig\?"):
        model.build(answers, tree)


def test_running_kernel_record_difference_is_a_render_time_warning(tree):
    own = "s:trace_event_raw_tcp_retransmit_skb"
    if hooks.tracefs_fields("tcp", "tcp_retransmit_skb") is None or running.members(own) is None:
        pytest.skip("the running kernel keeps tcp_retransmit_skb in its class record (or BTF/tracefs unreadable)")
    answers = default_answers() | {"attach": "tracepoint", "tracepoints": ["tcp:tcp_retransmit_skb"], "counters": [
        {"name": "t", "description": "d", "labels": {"family": ["inet", "inet6"]},
         "increments": [{"at": "tcp:tcp_retransmit_skb", "index": {"family": "args->family == 10"}}]}]}  # fmt: skip
    sampler = model.build(answers, tree)
    assert any("has no struct trace_event_raw_tcp_event_sk_skb" in w and "args->family" in w
               for w in sampler.warnings), sampler.warnings  # fmt: skip


# -- every problem of an answers file


def test_problems_reports_each_with_its_path(tree):
    answers = default_answers() | {"sampler": "Bad", "copyright_year": "abc", "tracepint": []}
    answers["tracepoints"][2] = "sched:sched_process_frek"
    increments = answers["counters"][0]["increments"]
    increments[0] = {"at": increments[0]["at"], "index": {"event": "child->pidd"}}
    increments[2]["at"] = "sched:sched_process_frek"
    found = {p.path: p.message for p in problems(answers, tree)}
    assert set(found) == {"tracepint", "sampler", "copyright_year", "tracepoints[2]",
                          "counters[0].increments[0]"}, found  # fmt: skip
    assert "did you mean sched_process_free" in found["tracepoints[2]"]
    assert "snake_case" in found["sampler"]
    # an increment at a good tracepoint is judged; the one at the refused tracepoint is not
    assert "no member 'pidd'" in found["counters[0].increments[0]"]


def test_problems_of_a_valid_file_is_empty(tree):
    assert problems(default_answers(), tree) == []


def test_new_answers_reports_all_and_writes_nothing(tree, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(default_answers() | {"group": "Net", "attach": "tp"}))
    before = tree_snapshot(tree)
    proc = cli("new", "--answers", str(bad), cwd=tree)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "2 problem(s), nothing written" in proc.stderr
    assert "  group: " in proc.stderr and "  attach: attach must be one of" in proc.stderr
    for text, why in (("- a\n- b\n", "must be a mapping"), ("group: [\n", "not valid YAML at line 2")):
        bad.write_text(text)
        proc = cli("new", "--answers", str(bad), cwd=tree)
        assert proc.returncode == 2 and why in proc.stderr and "Traceback" not in proc.stderr
    assert tree_snapshot(tree) == before


def test_new_check_shows_the_layout_and_writes_nothing(tree, tmp_path):
    good = tmp_path / "good.yml"
    good.write_text(yaml.safe_dump({"group": "signal", "sampler": "seen",
                                    "tracepoints": ["signal:signal_deliver(sig)"]}))  # fmt: skip
    before = tree_snapshot(tree)
    proc = cli("new", "--answers", str(good), "--check", cwd=tree)
    assert proc.returncode == 0, proc.stderr
    # the counters default (one family counting the event) is filled in as Copier would
    assert "map counters: 1 slot(s), W = roundup(1, 8) = 8" in proc.stdout
    assert "no problems; nothing written (--check)" in proc.stdout
    assert tree_snapshot(tree) == before


def test_new_without_a_terminal_says_so(tree):
    proc = subprocess.run([sys.executable, "-m", "rezolus_sampler.cli", "new"], cwd=tree,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.returncode == 2 and "needs a terminal; pass --answers FILE" in proc.stderr


# -- how a refusal reads at a prompt


def test_refusal_names_the_field_and_explains_yaml():
    shown = prompting.readable("Validation error for question 'counters': Invalid input", "- by: a ? 0 : 1\n")
    assert shown.startswith("counters: not valid YAML at line 1")
    assert 'by: "size > 4096 ? 1 : 0"' in shown
    assert prompting.readable("Validation error for question 'group': too long", "x") == "group: too long"
    assert prompting.yaml_problem("- a: 1\n") == ""
