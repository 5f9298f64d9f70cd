"""The model's checks and the facts it computes, without Copier (the bundled
vmlinux index stands in for a tree's headers)."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
from support import CASES, EXAMPLES, REPO, default_answers, load_answers, rezolus_dir

from rezolus_sampler.emit.lines import fill
from rezolus_sampler.spec import expr as E
from rezolus_sampler.spec import model, vmlinux

FORK = "sched:sched_process_fork"
ONE_HOOK = [f"{FORK}(parent, child)"]


def build(**change):
    answers = default_answers()
    answers.update(change)
    return model.build(answers)


def refused(fragment: str, **change):
    with pytest.raises(model.SpecError) as err:
        build(**change)
    assert fragment in str(err.value), str(err.value)
    return err.value


def counter(name="a_b", labels=None, increments=None, **extra):
    spec = {"name": name, "description": "Test counter", "labels": labels or {}}
    spec["increments"] = increments or [{"at": FORK}]
    return spec | extra


def program(sampler, tracepoint):
    return sampler.programs_by_hook[tracepoint]


def test_answers_schema_accepts_every_case():
    schema = json.loads((REPO / "schema/answers.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for case, answers in CASES.items():
        jsonschema.validate(answers, schema)


def test_bundled_index_is_the_snapshot_headers():
    """The bundled type index is the one of the Rezolus headers the template targets
    (rebuild: python -m rezolus_sampler.spec.vmlinux --rezolus <tree> --write-bundled)."""
    root = rezolus_dir()
    if root is None:
        pytest.skip("no Rezolus checkout")
    import hashlib

    for arch in vmlinux.ARCHES:
        sha = hashlib.sha256(vmlinux.header_path(root, arch).read_bytes()).hexdigest()
        assert vmlinux.index(None, arch).sha256 == sha, f"rebuild {vmlinux.BUNDLED.name}"


def test_index_reads_structs_typedefs_anonymous_members_and_tracepoints():
    found = vmlinux.build_index(
        """
        typedef unsigned int u32;
        typedef struct { long counter; } atomic_long_t;
        enum e { A = 0, B = 5 };
        struct inner { int x; };
        struct s {
            u32 a : 3;
            union { int b; void *p; };
            struct inner in;
            atomic_long_t cnt;
            enum e kind;
            struct s *next;
        };
        typedef void (*btf_trace_ev)(void *, struct s *, u32);
        """
    )
    members = found.members(E.CType("s:s"))
    assert members["a"].bits == 3 and members["a"].type.code == "u4"
    assert members["b"].union and members["p"].union and not members["a"].union
    assert members["in"].type.code == "s:inner" and members["next"].type.code == "*s:s"
    assert found.members(members["cnt"].type)["counter"].type.code == "i8"
    assert members["kind"].type.code == "e4+3" and members["kind"].type.range == (0, 7)
    assert [s for s, _ in found.tracepoints["ev"]] == ["struct s *", "u32"]
    assert {"A", "B"} <= found.constants


def test_identity_checks_name_the_field():
    assert refused("snake_case", group="Net").field == "group"
    assert refused("keyword", sampler="match").field == "sampler"
    assert refused("control", description="a\x1bb").field == "description"
    assert refused("within 48", group="g" * 30, sampler="s" * 30).field == "sampler"


def test_unknown_tracepoint_suggests_near_names():
    err = refused("did you mean netif_receive_skb", tracepoints=["net:netif_recieve_skb"])
    assert err.field == "tracepoints[0]"


def test_duplicate_hook_refused():
    refused("listed twice", tracepoints=ONE_HOOK + [FORK])


def test_label_limits():
    with pytest.raises(model.SpecError, match="cardinality"):
        model.parse_label("q", 1000, "c", model.MAX_FAMILY_SLOTS)
    with pytest.raises(model.SpecError, match="reserved"):
        model.parse_label("unit", [1, 2], "c", model.MAX_FAMILY_SLOTS)
    with pytest.raises(model.SpecError, match="overflow"):
        model.parse_label("q", {"values": ["a", "b"], "overflow": "c"}, "c", model.MAX_FAMILY_SLOTS)


def test_family_and_bank_limits():
    refused("label combinations", tracepoints=ONE_HOOK, counters=[
        counter(labels={"x": 32, "y": 16}, increments=[{"at": FORK, "index": {"x": "child->pid & 31", "y": "1"}}])])
    families = [counter(name=f"f_{i}", labels={"q": 200}, increments=[{"at": FORK, "index": {"q": "child->prio"}}])
                for i in range(3)]
    refused("per bank", tracepoints=ONE_HOOK, counters=families)


def test_every_label_needs_a_value_at_each_hook():
    refused("missing ['op']", tracepoints=ONE_HOOK, counters=[counter(labels={"op": ["a", "b"]})])


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
    assert [p.section for p in sampler.programs] == ["raw_tp/netif_receive_skb", "raw_tp/net_dev_start_xmit"]


def test_reads_in_each_program_variant():
    """tp_btf: one hop direct behind a NULL check; longer chains and raw_tp through
    BPF_CORE_READ; classic tracepoints read each record field once into a local."""
    sampler = build(tracepoints=ONE_HOOK, counters=[counter(increments=[
        {"at": FORK, "by": "child->pid + child->real_parent->pid + 1"}])])
    p = program(sampler, FORK)
    btf, raw = "\n".join(p.twin_lines("btf")), "\n".join(p.twin_lines("raw"))
    assert "(child ? child->pid : 0)" in btf
    assert "(child ? BPF_CORE_READ(child, real_parent, pid) : 0)" in btf
    assert "BPF_CORE_READ(child, pid)" in raw and "BPF_CORE_READ(child, real_parent, pid)" in raw
    classic = model.build(default_answers() | {
        "attach": "tracepoint", "tracepoints": [FORK],
        "counters": [counter(increments=[{"at": FORK, "by": "args->child_pid ? args->child_pid : 1",
                                          "when": "args->child_pid != 0"}])]})
    lines = program(classic, FORK).body("tracepoint")
    assert sum("= args->child_pid;" in line for line in lines) == 1  # read once: no modified ctx pointer


def test_bit_field_behind_a_pointer_reads_the_pointer_first():
    sampler = model.build(default_answers() | {
        "attach": "raw_tp", "tracepoints": ["net:netif_receive_skb(skb)"],
        "counters": [counter(labels={"t": 8}, increments=[
            {"at": "net:netif_receive_skb", "index": {"t": "skb->sk->__sk_common.skc_reuse"}}])]})
    text = "\n".join(program(sampler, "net:netif_receive_skb").body("raw"))
    assert "const struct sock* sk = BPF_CORE_READ(skb, sk);" in text
    assert "BPF_CORE_READ_BITFIELD_PROBED(sk, __sk_common.skc_reuse)" in text


def test_union_members_are_read_with_core_read_in_tp_btf():
    tracepoint = "dma_fence:dma_fence_emit"
    sampler = model.build(default_answers() | {
        "tracepoints": [f"{tracepoint}(fence)"],
        "counters": [counter(increments=[{"at": tracepoint, "by": "(u64)fence->timestamp + 1"}])]})
    assert "BPF_CORE_READ(fence, timestamp)" in "\n".join(program(sampler, tracepoint).twin_lines("btf"))


def test_computed_slots_are_bounds_checked_at_the_access():
    sampler = model.build(load_answers(REPO / "examples/blockio_ops.yml"))
    p = program(sampler, "block:block_rq_complete")
    errors = next(b for b in p.blocks if any("BLOCKIO_OPS_ERRORS_BASE" in line for line in b.lines))
    text = "\n".join(errors.lines)
    assert "(status < 4 ? status : 3)" in text  # overflow value 'other' is index 3
    assert errors.conditions == ["cond", "op < 4"]  # op has no overflow value: dropped
    assert "errors_slot_add(errors_bank, idx, 1);" in text
    assert sampler.maps[1].slot_add == "errors_slot_add"
    traffic = model.build(load_answers(REPO / "examples/network_traffic.yml"))
    assert all(m.slot_add is None for m in traffic.maps)  # constant slots need no check


def test_signed_amounts_add_only_positive_values():
    sampler = build(tracepoints=ONE_HOOK, counters=[counter(increments=[{"at": FORK, "by": "child->prio"}])])
    assert any("prio > 0" in b.conditions for b in program(sampler, FORK).blocks)


def test_generated_names_never_take_user_names():
    sampler = model.build(CASES["awkward_names"])
    p = program(sampler, FORK)
    assert p.hook.args[0].name == "cpu" and p.hook.args[1].name == "idx"
    body = "\n".join(p.body("btf"))
    assert "u32 cpu2 = bpf_get_smp_processor_id();" in body and "u64 idx2;" in body
    assert "#define BPF_MAP_TYPE_ARRAY_BASE" not in body  # macros live at file scope...
    assert {f.const for f in sampler.counters} >= {"BPF_MAP_TYPE_ARRAY", "LICENSE"}


def test_programs_named_like_libbpf_helpers_are_renamed():
    sampler = model.build(default_answers() | {
        "attach": "raw_tp", "tracepoints": ["bpf_trace:bpf_trace_printk"],
        "counters": [counter(increments=["bpf_trace:bpf_trace_printk"])]})
    assert [p.name for p in sampler.programs] == ["bpf_trace_printk_prog"]


def test_histogram_maps_groups_and_latency():
    sizes = model.build(load_answers(REPO / "examples/blockio_request_sizes.yml"))
    (group,) = sizes.histogram_maps
    assert [m.name for m in group.maps] == ["bytes_read", "bytes_write", "bytes_flush", "bytes_discard"]
    assert group.acq_group == "blockio_sizes_bytes" and group.bytes == 4 * 496 * 8
    wait = model.build(load_answers(REPO / "examples/scheduler_runqueue_wait.yml"))
    (stamp,) = wait.stamp_maps
    assert stamp.name == "runqueue_start" and stamp.bytes == 4194304 * 8
    switch = "\n".join(program(wait, "sched:sched_switch").body("btf"))
    # the wait of `next` is read and cleared first, then `prev` (still runnable) is stamped
    assert switch.index("*runqueue_at = 0;") < switch.index("*runqueue_at2 = now;")


def test_fill_matches_clang_format_rule():
    text = fill("    idx = ", ["A" * 40, "B" * 40, "C" * 40], " +", ";")
    assert text.splitlines() == ["    idx = " + "A" * 40 + " + " + "B" * 40 + " +",
                                 "          " + "C" * 40 + ";"]


def test_expression_types_and_folding():
    hook = model.check_hooks({"tracepoints": ["block:block_rq_complete(rq, error, nr_bytes)"]})[0]
    scope = E.Scope(hook.tracepoint, hook.scope_args, False, model.type_indexes(None), tuple(E.BUILTINS))
    e = E.check("(rq->cmd_flags & 0xff) + nr_bytes", scope, "value", "value")
    assert e.type.code == "u4" and e.reads and e.text == "(rq->cmd_flags & 0xff) + nr_bytes"
    assert E.check("(u64)1 << 40", scope, "by", "by").const == 1 << 40
    assert E.check("error - 1", scope, "index", "index").type.signed  # u8 promotes to int
    assert E.check("now - rq->io_start_time_ns", scope, "value", "value").builtins == ["now"]
    with pytest.raises(E.ExprError, match="always true"):
        E.check("error < 256", scope, "when", "when")  # u8: clang would warn
    with pytest.raises(E.ExprError, match="at most 32 bits"):
        E.check("rq->io_start_time_ns", scope, "key", "key")


def test_answers_are_not_mutated():
    answers = copy.deepcopy(CASES["blockio_ops"])
    model.build(answers)
    assert answers == CASES["blockio_ops"]


def test_examples_build():
    for path in EXAMPLES:
        assert model.build(load_answers(path)).programs
