"""A hostile-input matrix: each case is refused with one message that names the
field and says what is wrong, never a traceback, and a refused `copier copy`
leaves the Rezolus tree byte-identical. A few cases that look hostile but are
fine (names the generator namespaces) must be accepted.

Classes: expression constructs, types, name collisions, text and control
characters, lengths, path traversal, keywords, unicode, quoting, duplicates,
over-limit cardinalities, malformed tracepoints, wrong YAML types. README
("Hostile inputs") counts the cases per class.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections import Counter

import pytest
import yaml
from support import REPO, default_answers, rezolus_dir, tree_snapshot

from rezolus_sampler.spec import model

FORK = "sched:sched_process_fork"


def base() -> dict:
    return default_answers()


def family(**changes) -> dict:
    f = copy.deepcopy(base()["counters"][0])
    f.update(changes)
    return f


def with_counter(**changes) -> dict:
    return {"counters": [family(**changes)]}


def index(expression, label=None, at=FORK) -> dict:
    """One computed label `lane: 8` at fork indexed by `expression`."""
    labels = label if label is not None else {"lane": 8}
    return {"counters": [family(labels=labels, increments=[{"at": at, "index": {"lane": expression}}])]} | _only_fork()


def amount(expression) -> dict:
    return {"counters": [family(labels={}, increments=[{"at": FORK, "by": expression}])]} | _only_fork()


def when(expression) -> dict:
    return {"counters": [family(labels={}, increments=[{"at": FORK, "when": expression}])]} | _only_fork()


def _only_fork() -> dict:
    return {"tracepoints": ["sched:sched_process_fork(parent, child)"]}


# (class, answers change, field prefix, words the message must contain)
CASES = [
    # -- expression constructs
    ("expression", when("bpf_probe_write_user(parent, parent, 8) == 0"), "scheduler_processes_events", "calls are refused"),
    ("expression", amount("(bpf_send_signal(9), 1)"), "scheduler_processes_events", "comma operator"),
    ("expression", amount("bpf_send_signal(9)"), "scheduler_processes_events", "calls are refused"),
    ("expression", index("bpf_get_smp_processor_id() & 7"), "scheduler_processes_events", "calls are refused"),
    ("expression", amount("(1, 2)"), "scheduler_processes_events", "comma operator"),
    ("expression", when("parent->pid = 1"), "scheduler_processes_events", "assignments are refused"),
    ("expression", when("(parent->pid <<= 1) >= 0"), "scheduler_processes_events", "assignments are refused"),
    ("expression", when("(parent->pid >>= 1) >= 0"), "scheduler_processes_events", "assignments are refused"),
    ("expression", when("parent->pid += 1"), "scheduler_processes_events", "assignments are refused"),
    ("expression", when("parent->pid-- > 0"), "scheduler_processes_events", "increment and decrement"),
    ("expression", index("++child->pid"), "scheduler_processes_events", "increment and decrement"),
    ("expression", amount('"abc"'), "scheduler_processes_events", "string literal"),
    ("expression", amount("'a'"), "scheduler_processes_events", "character literal"),
    ("expression", amount("1 /* comment */"), "scheduler_processes_events", "a comment"),
    ("expression", amount("1 // comment"), "scheduler_processes_events", "a comment"),
    ("expression", amount("#define X 1"), "scheduler_processes_events", "preprocessor"),
    ("expression", amount("1; return 0"), "scheduler_processes_events", "statement separator"),
    ("expression", amount("({ 1; })"), "scheduler_processes_events", "statement separator"),
    ("expression", amount("sizeof(parent)"), "scheduler_processes_events", "sizeof is refused"),
    ("expression", index("&child->pid"), "scheduler_processes_events", "address-of"),
    ("expression", index("*child"), "scheduler_processes_events", "dereference"),
    ("expression", amount("1.5"), "scheduler_processes_events", "only integer literals"),
    ("expression", amount("99999999999999999999999"), "scheduler_processes_events", "does not fit in 64 bits"),
    ("expression", amount("1 \\\n + 2"), "scheduler_processes_events", "backslash"),
    ("expression", amount("x" * 201), "scheduler_processes_events", "the limit is 200"),
    ("expression", amount("((child->pid)"), "scheduler_processes_events", "is not a C expression"),
    ("expression", amount("parent->"), "scheduler_processes_events", "is not a C expression"),
    # -- types and meaning
    ("types", index("child->pidd"), "scheduler_processes_events", "no member 'pidd' in the x86_64 vmlinux.h; did you mean pid"),
    ("types", index("child->pid->x"), "scheduler_processes_events", "needs a pointer to a struct"),
    ("types", index("child.pid"), "scheduler_processes_events", "a pointer: use '->pid'"),
    ("types", index("child"), "scheduler_processes_events", "an index must be an integer"),
    ("types", index("(u32)child"), "scheduler_processes_events", "only integers may be cast"),
    ("types", index("(struct task_struct *)0"), "scheduler_processes_events", "casts to integer types"),
    ("types", index("chlid->pid"), "scheduler_processes_events", "not an argument"),
    ("types", amount("-1"), "scheduler_processes_events", "must be positive"),
    ("types", amount("0"), "scheduler_processes_events", "must be positive"),
    ("types", amount("child->pid / 2"), "scheduler_processes_events", "no signed division"),
    ("types", amount("child->pid % 2"), "scheduler_processes_events", "no signed division"),
    ("types", amount("(u64)child->pid / 0"), "scheduler_processes_events", "division by zero"),
    ("types", amount("(u64)child->pid << 64"), "scheduler_processes_events", "shift count 64"),
    ("types", amount("2147483647 + 1"), "scheduler_processes_events", "overflows"),
    ("types", when("child->pid == child->pid"), "scheduler_processes_events", "compares a value with itself"),
    ("types", when("(child->flags & 4) == 8"), "scheduler_processes_events", "is always false"),
    ("types", when("child->prio < 5000000000"), "scheduler_processes_events", "is always true"),
    ("types", when("child->pid && 1"), "scheduler_processes_events", "is always true"),
    ("types", when("1"), "scheduler_processes_events", "is always true"),
    ("types", when("!(child->pid << 2)"), "scheduler_processes_events", "compare it instead"),
    ("types", index("child->comm[16]"), "scheduler_processes_events", "outside comm[16]"),
    ("types", index("child->comm[child->pid]"), "scheduler_processes_events", "must be a constant"),
    ("types", index("9", {"lane": 8}), "scheduler_processes_events", "always 9, outside 0..7"),
    # -- name collisions (the generator namespaces what it can; these remain)
    ("collision", {"tracepoints": ["sched:sched_process_fork(ctx, child)"]}, "tracepoints", "BPF_PROG's context"),
    ("collision", {"tracepoints": ["sched:sched_process_fork(u32, child)"]}, "tracepoints", "typedef"),
    ("collision", {"tracepoints": ["sched:sched_process_fork(bpf_map_lookup_elem, child)"]}, "tracepoints", "libbpf"),
    ("collision", {"tracepoints": ["sched:sched_process_fork(now, child)"]}, "tracepoints", "builtin"),
    ("collision", with_counter(labels={}, increments=[FORK]) | {"tracepoints": ["sched:sched_process_fork(counters, child)"]}, "tracepoints", "map counters"),
    ("collision", {"tracepoints": ["sched:sched_process_fork(TASK_RUNNING, child)"]}, "tracepoints", "snake_case"),
    ("collision", with_counter(name="name", labels={}, increments=[FORK]) | _only_fork(), "name.labels", "NAME"),
    ("collision", with_counter(name="sampler_entry", labels={}, increments=[FORK]) | _only_fork(), "sampler_entry.labels", "SAMPLER_ENTRY"),
    ("collision", with_counter(name="max_cpus", labels={}, increments=[FORK]) | _only_fork(), "max_cpus.labels", "MAX_CPUS"),
    ("collision", with_counter(name="bpf_run_count", labels={}, increments=[FORK]) | _only_fork(), "bpf_run_count.labels", "BPF_RUN_COUNT"),
    ("collision", with_counter(name="counters_acq", labels={}, increments=[FORK]) | _only_fork(), "counters_acq.labels", "COUNTERS_ACQ"),
    ("collision", with_counter(map="barrier"), "scheduler_processes_events.map", "libbpf"),
    ("collision", with_counter(map="u64"), "scheduler_processes_events.map", "typedef"),
    ("collision", {"group": "std"}, "group", "crate"),
    ("collision", {"group": "linkme"}, "group", "crate"),
    ("collision", {"sampler": "core"}, "sampler", "crate"),
    ("collision", with_counter(labels={"unit": 4}), "scheduler_processes_events.labels.unit", "reserved by Rezolus"),
    ("collision", with_counter(labels={"acq_group": 4}), "scheduler_processes_events.labels.acq_group", "reserved by Rezolus"),
    # -- text and control characters
    ("text", {"description": "tab\there"}, "description", "control"),
    ("text", {"description": "form\x0cfeed"}, "description", "control"),
    ("text", {"description": "escape \x1b[31m"}, "description", "control"),
    ("text", {"description": "nul\x00byte"}, "description", "control"),
    ("text", {"description": "del\x7f"}, "description", "control"),
    ("text", {"description": "new\nline"}, "description", "control"),
    ("text", {"description": "right-to-left \u202e override"}, "description", "control"),
    ("text", {"description": "zero\u200bwidth"}, "description", "control"),
    ("text", {"description": "line\u2028separator"}, "description", "control"),
    ("text", {"description": ""}, "description", "non-empty"),
    ("text", {"description": "   "}, "description", "non-empty"),
    ("text", with_counter(description="x" * 201), "scheduler_processes_events.description", "keep it under 200"),
    # -- quoting
    ("quoting", {"description": 'Counts "quoted" things'}, "description", "build.rs metric parser"),
    ("quoting", {"description": "Counts things )] badly"}, "description", "build.rs metric parser"),
    ("quoting", {"description": "ends a comment */"}, "description", "build.rs metric parser"),
    ("quoting", {"description": "a back\\slash"}, "description", "build.rs metric parser"),
    ("quoting", {"description": "a `backtick`"}, "description", "build.rs metric parser"),
    ("quoting", with_counter(labels={"event": ["fork", 'ex"ec', "free"]}), "scheduler_processes_events.labels.event", "must be up to 32 letters"),
    ("quoting", with_counter(unit='by"tes'), "scheduler_processes_events.unit", "must be a word"),
    # -- lengths
    ("length", {"group": "g" * 127, "sampler": "s" * 127}, "group", "the limit is 32"),
    ("length", {"group": "g" * 30, "sampler": "s" * 30}, "sampler", "keep <group>_<sampler> within 48"),
    ("length", with_counter(name="m" * 65), "counters[0].name", "the limit is 64"),
    ("length", with_counter(labels={"event": ["x" * 33]}, increments=[{"at": FORK, "labels": {"event": "x" * 33}}]) | _only_fork(), "scheduler_processes_events.labels.event", "up to 32"),
    ("length", with_counter(name="a" * 50, labels={"event": ["b" * 20]}, increments=[{"at": FORK, "labels": {"event": "b" * 20}}]) | _only_fork(), "a" * 50 + ".labels", "the limit is 64"),
    ("length", with_counter(map="m" * 13), "scheduler_processes_events.map", "at most 12"),
    # -- path traversal
    ("path", {"group": "../evil"}, "group", "snake_case"),
    ("path", {"sampler": "a/b"}, "sampler", "snake_case"),
    ("path", {"sampler": "..."}, "sampler", "snake_case"),
    ("path", {"tracepoints": ["../../etc:passwd"]}, "tracepoints[0]", "must look like"),
    ("path", with_counter(map="../m"), "scheduler_processes_events.map", "snake_case"),
    # -- keywords
    ("keyword", {"group": "match"}, "group", "keyword"),
    ("keyword", {"sampler": "type"}, "sampler", "keyword"),
    ("keyword", {"sampler": "struct"}, "sampler", "keyword"),
    ("keyword", with_counter(labels={"fn": 2}), "scheduler_processes_events.labels", "keyword"),
    ("keyword", with_counter(map="while"), "scheduler_processes_events.map", "keyword"),
    ("keyword", {"tracepoints": ["sched:sched_process_fork(int, child)"]}, "tracepoints", "keyword"),
    # -- unicode
    ("unicode", {"group": "gröup"}, "group", "snake_case"),
    ("unicode", {"sampler": "ｆｕｌｌ"}, "sampler", "snake_case"),
    ("unicode", with_counter(labels={"event": ["fork", "ëxec", "free"]}), "scheduler_processes_events.labels.event", "letters, digits"),
    ("unicode", with_counter(unit="µs"), "scheduler_processes_events.unit", "must be a word"),
    ("unicode", amount("1 + ①"), "scheduler_processes_events", "printable ASCII"),
    # -- duplicates
    ("duplicate", {"tracepoints": ["sched:sched_process_fork", "sched:sched_process_fork(a, b)"]}, "tracepoints[1]", "listed twice"),
    ("duplicate", {"counters": [family(), family()]}, "counters[1].name", "declared twice"),
    ("duplicate", with_counter(labels={"event": ["fork", "fork"]}), "scheduler_processes_events.labels.event", "duplicate values"),
    ("duplicate", {"tracepoints": ["sched:sched_process_fork(a, a)"]}, "tracepoints", "distinct"),
    ("duplicate", with_counter(increments=[{"at": FORK, "labels": {"event": "fork"}, "index": {"event": "1"}}]), "scheduler_processes_events", "both fixed and computed"),
    # -- over-limit cardinalities
    ("limit", with_counter(labels={"q": 257}), "scheduler_processes_events.labels.q", "1..256"),
    ("limit", with_counter(labels={"q": 64, "r": 64}, increments=[{"at": FORK, "index": {"q": "1", "r": "2"}}]) | _only_fork(), "scheduler_processes_events.labels", "label combinations"),
    ("limit", with_counter(labels={"q": 0}), "scheduler_processes_events.labels.q", "1..256"),
    ("limit", {"histograms": [{"name": "h", "description": "h", "labels": {"q": 17}, "records": [{"at": FORK, "index": {"q": "1"}, "value": "1"}]}]}, "h.labels.q", "1..16"),
    ("limit", {"counters": [family(name=f"f{i}", labels={"q": 256}, increments=[{"at": FORK, "index": {"q": "child->pid & 255"}}]) for i in range(3)]} | _only_fork(), "f0.map", "the limit is 512"),
    ("limit", {"tracepoints": [f"sched:sched_process_fork(a{i}, b{i})" for i in range(65)]}, "tracepoints", "the limit is 64"),
    # -- malformed tracepoints
    ("tracepoint", {"tracepoints": ["sched"]}, "tracepoints[0]", "must look like"),
    ("tracepoint", {"tracepoints": ["sched:"]}, "tracepoints[0]", "must look like"),
    ("tracepoint", {"tracepoints": [":sched_process_fork"]}, "tracepoints[0]", "must look like"),
    ("tracepoint", {"tracepoints": ["sched:sched_process_forkk"]}, "tracepoints[0]", "did you mean sched_process_fork"),
    ("tracepoint", {"tracepoints": ["sched:sched_process_fork(a, b, c)"]}, "tracepoints[0]", "has 2 arguments"),
    ("tracepoint", {"tracepoints": ["sched:sched_process_fork@sched_process_fork"]}, "tracepoints[0]", "only to attach style 'tracepoint'"),
    ("tracepoint", {"attach": "tracepoint", "tracepoints": ["sched:sched_process_fork(a, b)"]}, "tracepoints[0]", "record's fields"),
    ("tracepoint", {"tracepoints": [42]}, "tracepoints[0]", "must be a string"),
    ("tracepoint", {"tracepoints": []}, "tracepoints", "at least one"),
    # -- wrong YAML types
    ("yaml", {"tracepoints": "sched:sched_process_fork"}, "tracepoints", "must be a list"),
    ("yaml", {"counters": {"name": "x"}}, "counters", "must be a list"),
    ("yaml", {"counters": ["just a string"]}, "counters[0]", "must be a mapping"),
    ("yaml", with_counter(labels=["event"]), "labels of scheduler_processes_events", "must be a mapping"),
    ("yaml", with_counter(increments={"at": FORK}), "increments of scheduler_processes_events", "must be a list"),
    ("yaml", with_counter(increments=[{"at": FORK, "index": ["event"]}]), "scheduler_processes_events", "must be a mapping"),
    ("yaml", {"attach": ["tp_btf"]}, "attach", "one of tp_btf, raw_tp, tracepoint"),
    ("yaml", {"layout": 3}, "layout", "one of totals, per_cpu"),
    ("yaml", {"copyright_year": "abc"}, "copyright_year", "a year"),
    ("yaml", {"group": 12}, "group", "snake_case"),
    ("yaml", {"description": ["a", "b"]}, "description", "non-empty line of text"),
    ("yaml", with_counter(labels={"event": {"values": ["a"], "extra": 1}}), "scheduler_processes_events.labels.event", "unknown keys"),
    ("yaml", with_counter(surprise=1), "counters[0]", "unknown keys"),
    ("yaml", with_counter(labels={"event": True}), "scheduler_processes_events.labels.event", "explicit values"),
]

ACCEPTED = [
    # names that only look dangerous: the generator namespaces what they become
    ("args named like generated locals", with_counter(labels={}, increments=[FORK]) | {"tracepoints": ["sched:sched_process_fork(cpu, idx)"]}),
    ("counter named like a libbpf macro", with_counter(name="bpf_map_type_array")),
    ("counter named like a map flag", with_counter(name="bpf_f_mmapable")),
    ("counter named license / sec", {"counters": [family(name="license"), family(name="sec")]}),
    ("label value with dots and dashes", with_counter(labels={"event": ["v1.0", "a-b", "c_d"]},
                                                      increments=[{"at": FORK, "labels": {"event": "v1.0"}}, {"at": "sched:sched_process_exec", "labels": {"event": "a-b"}}, {"at": "sched:sched_process_free", "labels": {"event": "c_d"}}])),
    ("unicode prose in a description", {"description": "Compte les événements — fork, exec"}),
]


def answers_for(change) -> dict:
    answers = base()
    answers.update(copy.deepcopy(change))
    return answers


@pytest.mark.parametrize("cls,change,field,words", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_refused_with_one_message_naming_the_field(cls, change, field, words):
    with pytest.raises(model.SpecError) as err:
        model.build(answers_for(change), rezolus_dir())
    message = str(err.value)
    assert words in message, message
    assert err.value.field.startswith(field), f"field {err.value.field!r}: {message}"
    assert "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize("what,change", ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_namespaced_names_are_accepted(what, change):
    sampler = model.build(answers_for(change), rezolus_dir())
    assert sampler.programs


def test_the_matrix_covers_every_class():
    classes = Counter(case[0] for case in CASES)
    assert len(CASES) >= 80
    assert set(classes) == {"expression", "types", "collision", "text", "quoting", "length", "path",
                            "keyword", "unicode", "duplicate", "limit", "tracepoint", "yaml"}


# Through the real command line, the first case of every class: one line, the
# field, nothing written.
CLI = [next(i for i, case in enumerate(CASES) if case[0] == cls) for cls in dict.fromkeys(c[0] for c in CASES)]


@pytest.mark.parametrize("case", CLI, ids=[f"{CASES[i][0]}-{i}" for i in CLI])
def test_copier_cli_refuses_without_traceback_and_writes_nothing(tree, tmp_path, case):
    _, change, field, words = CASES[case]
    data = tmp_path / "answers.yml"
    data.write_text(yaml.safe_dump(answers_for(change), allow_unicode=True))
    before = tree_snapshot(tree)
    proc = subprocess.run(
        [sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--vcs-ref", "HEAD",
         "--data-file", str(data), str(REPO), str(tree)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    refusal = [line for line in proc.stderr.splitlines() if line.startswith("Refusing to render")]
    assert len(refusal) == 1 and words in refusal[0] and f"({field}" in refusal[0], proc.stderr[-2000:]
    assert tree_snapshot(tree) == before


def test_readme_counts_the_matrix():
    readme = (REPO / "README.md").read_text()
    classes = Counter(case[0] for case in CASES)
    for cls, n in classes.items():
        assert f"| {cls} | {n} |" in readme, f"README's hostile-input table lacks '| {cls} | {n} |'"
    assert f"{len(CASES)} refused cases" in readme
