"""The doc stub (README.md next to each sampler) states the model's facts."""

from __future__ import annotations

import re

from support import CASES, make_tree, render, render_files

from rezolus_sampler.spec import model


def test_doc_stub_facts_match_model(rendered):
    tree, dirs = rendered
    for case, directory in dirs.items():
        stub = (directory / "README.md").read_text()
        sampler = model.build(CASES[case], tree)
        assert f"# {sampler.name}\n" in stub
        assert f"| programs | {len(sampler.programs)} in the object, {len(sampler.hooks)} attached" in stub
        for m in sampler.maps:
            fact = (f"`{m.name}`: {m.n} slots, W = roundup({m.n}, 8) = {m.width}, "
                    f"MAX_CPUS × W × 8 B = {m.bytes} B")
            assert fact in stub, f"{case}: {fact}"
        assert f"| memory | {sampler.memory_bytes} B in total |" in stub
        for c in sampler.counters:
            row = next(line for line in stub.splitlines() if line.startswith(f"| `{c.name}` |"))
            for label in c.labels:
                assert f"`{label.name}`: {', '.join(label.values)} ({label.cardinality}" in row
            assert f"`{c.map}` slots {c.base}..{c.base + c.cardinality - 1}" in row
        for hook in sampler.hooks:
            assert f"`{hook.tracepoint}`" in stub
        # every principle the stub cites is defined
        assert set(re.findall(r"\*\*(P\d+)\*\*", stub)) >= {"P1", "P2", "P3", "P4", "P5", "P7"}
        assert "<!-- measured-cost:begin -->" in stub and "<!-- measured-cost:end -->" in stub
        assert "Not measured yet" in stub


def test_doc_stub_does_not_depend_on_the_tree(rendered):
    """`copier update` diffs renders made outside the tree against the one inside
    it: a stub naming the tree's other samplers would conflict on every update.
    The stub is the same wherever it is rendered; the shared hook is reported on
    stderr at render time instead (tests/test_render.py) and by the audit."""
    tree, dirs = rendered
    in_tree = (dirs["syscall_outcomes"] / "README.md").read_text()
    assert render_files(CASES["syscall_outcomes"], None)["README.md"] == in_tree
    assert "syscall_counts" not in in_tree  # the sampler sharing raw_syscalls:sys_enter
    assert "rezolus-sampler audit" in in_tree


def test_shared_hook_is_warned_at_render_time(tmp_path, capfd):
    tree = make_tree(tmp_path / "rezolus")
    capfd.readouterr()
    render(tree, CASES["syscall_outcomes"])
    err = capfd.readouterr().err
    assert "warning: raw_syscalls:sys_enter is already attached by syscall_counts" in err
