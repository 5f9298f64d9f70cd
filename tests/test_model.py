"""The model's validators and derived facts, without Copier or a Rezolus tree
(the bundled tracepoint index stands in for vmlinux.h)."""

from __future__ import annotations

import json

import jsonschema
import pytest
from support import EXAMPLES, REPO, default_answers, load_answers, rezolus_dir

from rezolus_sampler.spec import model, vmlinux
from rezolus_sampler.emit.lines import fill


def build(**change):
    answers = default_answers()
    answers.update(change)
    return model.build(answers)


def refused(fragment: str, **change):
    with pytest.raises(model.SpecError) as err:
        build(**change)
    assert fragment in str(err.value)


def counter(name="a_b", labels=None, increments=None, **extra):
    spec = {"name": name, "description": "Test counter", "labels": labels or {}}
    spec["increments"] = increments or [{"at": "sched:sched_process_fork"}]
    return spec | extra


ONE_HOOK = ["sched:sched_process_fork(parent, child)"]


def test_answers_schema_accepts_examples_and_default():
    schema = json.loads((REPO / "schema/answers.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for answers in [load_answers(p) for p in EXAMPLES] + [default_answers()]:
        jsonschema.validate(answers, schema)


def test_bundled_index_matches_rezolus_headers():
    root = rezolus_dir()
    if root is None:
        pytest.skip("no Rezolus checkout")
    for arch in vmlinux.ARCHES:
        parsed = vmlinux.parse(vmlinux.header_path(root, arch).read_text(errors="replace"))
        assert parsed == vmlinux.signatures(None, arch), f"regenerate {vmlinux.INDEX_PATH.name}"


@pytest.mark.parametrize("bad", ["Net", "1net", "net-x", "net__x", "../x", "x/y", "", "match", "int"])
def test_check_name_refuses(bad):
    with pytest.raises(model.SpecError):
        model.check_name(bad, "group")


@pytest.mark.parametrize("bad", ['a "quote"', "a )] b", "back\\slash", "two\nlines", "a */ b", ""])
def test_check_text_refuses(bad):
    with pytest.raises(model.SpecError):
        model.check_text(bad, "description")


@pytest.mark.parametrize("bad", ["a; b", "{ x }", "x = 1", "x++", "a // c", "f(", '"s"', "#x"])
def test_check_expr_refuses(bad):
    with pytest.raises(model.SpecError):
        model.check_expr(bad, "index")


def test_unknown_tracepoint_suggests_near_names():
    refused("did you mean netif_receive_skb", tracepoints=["net:netif_recieve_skb"])


def test_duplicate_hook_refused():
    refused("listed twice", tracepoints=ONE_HOOK + ["sched:sched_process_fork"])


def test_parse_label_limits():
    with pytest.raises(model.SpecError, match="cardinality"):
        model.parse_label("q", 1000, "c")
    with pytest.raises(model.SpecError, match="reserved"):
        model.parse_label("unit", [1, 2], "c")
    with pytest.raises(model.SpecError, match="overflow"):
        model.parse_label("q", {"values": ["a", "b"], "overflow": "c"}, "c")


def test_parse_counter_family_limit():
    refused("label combinations", tracepoints=ONE_HOOK,
            counters=[counter(labels={"x": 32, "y": 16},
                              increments=[{"at": "sched:sched_process_fork",
                                           "index": {"x": "1", "y": "2"}}])])


def test_lay_out_bank_limit():
    families = [counter(name=f"f_{i}", labels={"q": 200},
                        increments=[{"at": "sched:sched_process_fork", "index": {"q": "1"}}])
                for i in range(3)]
    refused("per bank", tracepoints=ONE_HOOK, counters=families)


def test_every_label_needs_a_value_at_each_hook():
    refused("missing ['op']", tracepoints=ONE_HOOK,
            counters=[counter(labels={"op": ["a", "b"]})])


def test_expression_names_must_be_arguments():
    refused("is not an argument", tracepoints=ONE_HOOK,
            counters=[counter(increments=[{"at": "sched:sched_process_fork", "by": "skb->len"}])])


def test_raw_pointer_chains_become_core_reads():
    sampler = build(tracepoints=ONE_HOOK, counters=[
        counter(increments=[{"at": "sched:sched_process_fork", "by": "child->pid + 0"}])])
    expr = sampler.hooks[0].locals[0].expr
    assert (expr.core, expr.direct) == ("BPF_CORE_READ(child, pid) + 0", "child->pid + 0")
    assert expr.for_variant("raw") == expr.core and expr.for_variant("btf") == expr.direct


def test_slots_widths_and_names():
    sampler = model.build(load_answers(REPO / "examples/blockio_ops.yml"))
    counters, errors = sampler.maps
    assert (counters.n, counters.width, errors.n, errors.width) == (12, 16, 16, 16)
    assert errors.counters[0].strides() == [4, 1]
    statics = [s.static for s in errors.slots]
    assert statics[:2] == ["BLOCKIO_OPS_ERRORS_READ_NOTSUPP", "BLOCKIO_OPS_ERRORS_READ_TIMEOUT"]
    assert sampler.disabled_when("raw") == ["block_rq_complete_raw", "block_rq_requeue_raw"]
    assert counters.bytes == 1024 * 16 * 8


def test_traffic_reproduction_has_hand_written_slot_meaning():
    sampler = model.build(load_answers(REPO / "examples/network_traffic.yml"))
    assert [s.label_text for s in sampler.maps[0].slots] == [
        "network_bytes{direction=receive}", "network_bytes{direction=transmit}",
        "network_packets{direction=receive}", "network_packets{direction=transmit}",
    ]  # RX_BYTES 0, TX_BYTES 1, RX_PACKETS 2, TX_PACKETS 3 in network/traffic/mod.bpf.c
    assert [p.section for p in sampler.programs] == [
        "raw_tp/netif_receive_skb", "raw_tp/net_dev_start_xmit"]


def test_overflow_clamps_and_drop_guards():
    sampler = model.build(load_answers(REPO / "examples/blockio_ops.yml"))
    errors = [s for s in sampler.hooks[0].statements if s.map == "errors"][0]
    assert "(status < 4 ? status : 3)" in errors.terms  # overflow value 'other' is index 3
    assert errors.guard == "(error != 0) && op < 4"  # op has no overflow value: dropped


def test_fill_matches_clang_format_rule():
    text = fill("    idx = ", ["A" * 40, "B" * 40, "C" * 40], " +", ";")
    assert text.splitlines() == ["    idx = " + "A" * 40 + " + " + "B" * 40 + " +",
                                 "          " + "C" * 40 + ";"]
