"""Tests for rezolus_sampler/tree/register.py (and its Copier task entry hooks/register.py) against a copy of the real Rezolus snapshot."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

from rezolus_sampler.tree import register  # noqa: E402
from rezolus_sampler.tree.register import (  # noqa: E402
    Registration,
    RegistrationError,
    apply,
    is_rezolus_tree,
    main,
    plan,
)

SCRIPT = PROJECT / "hooks" / "register.py"


def _snapshot_dir() -> Path:
    env = os.environ.get("REZOLUS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "rezolus"


@pytest.fixture
def rezolus(tmp_path: Path) -> Path:
    src = _snapshot_dir()
    if not (src / "build.rs").is_file():
        pytest.skip(
            f"no Rezolus checkout at {src} (set REZOLUS_DIR to a Rezolus source tree)"
        )
    dst = tmp_path / "rezolus"
    shutil.copytree(src, dst)
    # The snapshot is read-only; make the copy writable like a real checkout.
    for dirpath, dirnames, filenames in os.walk(dst):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            os.chmod(p, os.stat(p).st_mode | stat.S_IWUSR)
    os.chmod(dst, os.stat(dst).st_mode | stat.S_IWUSR)
    return dst


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def tree_dirs(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()}


NETFOO = Registration(
    group="network",
    sampler="foo",
    description="BPF sampler that counts foo packets",
    metric_names=("network_foo_packets", "netfoo_bytes"),
)
GADGET = Registration(
    group="widgets",
    sampler="gadget",
    description="BPF sampler for gadget widgets",
    metric_names=("widgets_gadget_events", "gadget_latency"),
)


# ---------------------------------------------------------------- parsers


def const_array(text: str, const: str) -> str:
    m = re.search(rf"const {const}: [^=]*= &\[(.*?)\n\s*\];", text, re.S)
    assert m, f"{const} not found"
    return m.group(1)


def string_items(body: str) -> list[str]:
    return re.findall(r'^\s*"([a-z0-9_]+)",\s*$', body, re.M)


def tuple_items(body: str) -> list[tuple[str, str]]:
    # one-line `("a", "b"),` and rustfmt-wrapped `(\n "a",\n "b",\n),`
    return re.findall(r'\(\s*"([a-z0-9_]+)",\s*"([a-z0-9_]+)",?\s*\),', body)


def build_sources(root: Path) -> list[tuple[str, str]]:
    text = (root / "build.rs").read_text()
    m = re.search(r"const SOURCES: &\[\(&str, &str\)\] = &\[(.*?)\];", text, re.S)
    assert m
    return tuple_items(m.group(1))


def mod_lines(path: Path) -> list[str]:
    return re.findall(r"^mod ([a-z0-9_]+);$", path.read_text(), re.M)


def stats_blocks(path: Path) -> list[str]:
    text = path.read_text()
    m = re.search(r'#\[cfg\(not\(target_os = "linux"\)\)\]\n(?:pub )?mod stats \{\n(.*)\n\}', text, re.S)
    assert m
    return re.findall(r"^    mod ([a-z0-9_]+) \{$", m.group(1), re.M)


def toml_sections(root: Path) -> list[str]:
    text = (root / "config/agent.toml").read_text()
    return re.findall(r"^\[samplers\.([a-z0-9_]+)\]$", text, re.M)


def golden_doc(root: Path) -> dict:
    text = (root / "src/analysis/extract/golden.rs").read_text()
    m = re.search(r'const GOLDEN: &str = r#"(.*?)"#;', text, re.S)
    assert m
    return json.loads(m.group(1))


def golden_absent_array(root: Path) -> list[str]:
    text = (root / "src/analysis/extract/golden.rs").read_text()
    m = re.search(r'"subsystems_absent": (\[.*?\])', text, re.S)
    assert m
    return json.loads(m.group(1))


def context_text(root: Path) -> str:
    return (root / "src/analysis/extract/context.rs").read_text()


# ---------------------------------------------------------------- tests


def test_is_rezolus_tree(rezolus: Path, tmp_path: Path) -> None:
    assert is_rezolus_tree(rezolus)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not is_rezolus_tree(empty)
    (empty / "build.rs").write_text("fn main() {}\n")
    assert not is_rezolus_tree(empty)


def test_registration_name_and_normalisation() -> None:
    reg = Registration("network", "foo", "d", ["a_b", "c"])  # list is accepted
    assert reg.name == "network_foo"
    assert reg.metric_names == ("a_b", "c")


def test_existing_group(rezolus: Path) -> None:
    before_sources = build_sources(rezolus)
    changed = apply(rezolus, NETFOO)
    rel = {str(p.relative_to(rezolus)) for p in changed}
    assert rel == {
        "build.rs",
        "src/agent/samplers/network/linux/mod.rs",
        "src/agent/samplers/network/mod.rs",
        "config/agent.toml",
        "src/analysis/extract/context.rs",
        "src/analysis/extract/golden.rs",
    }

    # 1. build.rs
    sources = build_sources(rezolus)
    assert sources.count(("network", "foo")) == 1
    assert sources == sorted(sources)
    assert sorted(sources) == sorted(before_sources + [("network", "foo")])
    assert '        ("network", "foo"),\n' in (rezolus / "build.rs").read_text()

    # 2. linux/mod.rs
    mods = mod_lines(rezolus / "src/agent/samplers/network/linux/mod.rs")
    assert mods.count("foo") == 1 and mods == sorted(mods)

    # 3. group mod.rs fallback block
    group_mod = rezolus / "src/agent/samplers/network/mod.rs"
    blocks = stats_blocks(group_mod)
    assert blocks.count("foo") == 1 and blocks == sorted(blocks)
    text = group_mod.read_text()
    assert (
        "    }\n\n    mod foo {\n"
        '        include!("./linux/foo/stats.rs");\n'
        "    }\n\n    mod interfaces {\n"
    ) in text
    # samplers/mod.rs untouched for an existing group
    assert mod_lines(rezolus / "src/agent/samplers/mod.rs").count("network") == 1

    # 4. agent.toml
    toml_text = (rezolus / "config/agent.toml").read_text()
    assert toml_text.count("[samplers.network_foo]") == 1
    assert (
        "[samplers.network_ethtool]\n\n"
        "# BPF sampler that counts foo packets\n"
        "[samplers.network_foo]\n\n"
        "# Produces network interface statistics"
    ) in toml_text
    assert "network_foo" in tomllib.loads(toml_text)["samplers"]
    sections = toml_sections(rezolus)
    i = sections.index("network_foo")
    assert sections[i - 1] < "network_foo" < sections[i + 1]

    # 5. context.rs
    ctx = context_text(rezolus)
    expected = string_items(const_array(ctx, "EXPECTED_SUBSYSTEMS"))
    assert expected.count("network_foo") == 1 and expected == sorted(expected)
    bpf = string_items(const_array(ctx, "BPF_SAMPLERS"))
    assert bpf.count("network_foo") == 1 and bpf == sorted(bpf)
    rows = tuple_items(const_array(ctx, "METRIC_SAMPLERS"))
    assert rows.count(("netfoo_bytes", "network_foo")) == 1
    assert not any(m == "network_foo_packets" for m, _ in rows)
    assert [m for m, _ in rows] == sorted(m for m, _ in rows)
    assert '    ("netfoo_bytes", "network_foo"),\n' in ctx

    # 6. golden.rs
    absent = golden_absent_array(rezolus)
    assert absent.count("network_foo") == 1 and absent == sorted(absent)
    doc = golden_doc(rezolus)
    assert doc["context"]["coverage"]["subsystems_absent"] == absent


def test_new_group(rezolus: Path) -> None:
    changed = apply(rezolus, GADGET)
    rel = {str(p.relative_to(rezolus)) for p in changed}
    assert {
        "src/agent/samplers/widgets/mod.rs",
        "src/agent/samplers/widgets/linux/mod.rs",
        "src/agent/samplers/mod.rs",
    } <= rel

    base = rezolus / "src/agent/samplers/widgets"
    assert (base / "linux/mod.rs").read_text() == "mod gadget;\n"
    gm = (base / "mod.rs").read_text()
    assert gm.startswith('#[cfg(target_os = "linux")]\nmod linux;\n\n')
    assert stats_blocks(base / "mod.rs") == ["gadget"]
    assert 'include!("./linux/gadget/stats.rs");' in gm

    top = mod_lines(rezolus / "src/agent/samplers/mod.rs")
    assert top.count("widgets") == 1 and top == sorted(top)

    sources = build_sources(rezolus)
    assert sources[-1] == ("widgets", "gadget") and sources == sorted(sources)
    assert toml_sections(rezolus).count("widgets_gadget") == 1
    assert "widgets_gadget" in tomllib.loads((rezolus / "config/agent.toml").read_text())["samplers"]

    ctx = context_text(rezolus)
    assert string_items(const_array(ctx, "EXPECTED_SUBSYSTEMS"))[-1] == "widgets_gadget"
    assert string_items(const_array(ctx, "BPF_SAMPLERS"))[-1] == "widgets_gadget"
    rows = tuple_items(const_array(ctx, "METRIC_SAMPLERS"))
    assert rows.count(("gadget_latency", "widgets_gadget")) == 1
    assert not any(m == "widgets_gadget_events" for m, _ in rows)

    absent = golden_absent_array(rezolus)
    assert absent[-1] == "widgets_gadget" and absent == sorted(absent)
    golden_doc(rezolus)  # the whole document still parses


@pytest.mark.parametrize("reg", [NETFOO, GADGET], ids=["existing-group", "new-group"])
def test_apply_twice_is_noop(rezolus: Path, reg: Registration) -> None:
    assert apply(rezolus, reg)
    after_first = tree_bytes(rezolus)
    assert plan(rezolus, reg) == {}
    assert apply(rezolus, reg) == []
    assert tree_bytes(rezolus) == after_first


def test_plan_writes_nothing(rezolus: Path) -> None:
    before = tree_bytes(rezolus)
    changes = plan(rezolus, GADGET)
    assert len(changes) == 7
    assert tree_bytes(rezolus) == before
    assert all(p.is_absolute() or str(p).startswith(str(rezolus)) for p in changes)


@pytest.mark.parametrize(
    "group,sampler", [("aaa", "first"), ("network", "foo"), ("zzz", "last")]
)
def test_golden_json_stays_valid(rezolus: Path, group: str, sampler: str) -> None:
    reg = Registration(group, sampler, "d", ())
    before = golden_absent_array(rezolus)
    apply(rezolus, reg)
    absent = golden_absent_array(rezolus)
    assert absent == sorted(before + [reg.name])
    assert golden_doc(rezolus)["context"]["coverage"]["subsystems_absent"] == absent


def rows_of(root: Path, name: str) -> tuple[str, ...]:
    rows = tuple_items(const_array(context_text(root), "METRIC_SAMPLERS"))
    return tuple(metric for metric, sampler in rows if sampler == name)


def test_already_registered_real_samplers_are_noops(rezolus: Path) -> None:
    before = tree_bytes(rezolus)
    # scheduler_runqueue is also in golden's subsystems_present
    runqueue = rows_of(rezolus, "scheduler_runqueue") + ("scheduler_runqueue_wait",)
    assert plan(rezolus, Registration("scheduler", "runqueue", "x", runqueue)) == {}
    # tcp_bytes already has its METRIC_SAMPLERS row
    assert plan(rezolus, Registration("tcp", "traffic", "x", rows_of(rezolus, "tcp_traffic"))) == {}
    assert apply(rezolus, Registration("cpu", "usage", "x", rows_of(rezolus, "cpu_usage"))) == []
    assert tree_bytes(rezolus) == before


def test_reregistration_drops_rows_the_metrics_no_longer_need(rezolus: Path) -> None:
    """Registration reconciles: a renamed or removed unprefixed metric loses its
    METRIC_SAMPLERS row, so the text equals a first registration of the new metrics."""
    fresh = rezolus.parent / "fresh"
    shutil.copytree(rezolus, fresh)
    old = Registration("network", "foo", "d", ("netfoo_bytes", "netfoo_drops", "network_foo_x"))
    new = Registration("network", "foo", "d", ("netfoo_octets", "network_foo_x"))
    apply(rezolus, old)
    assert rows_of(rezolus, "network_foo") == ("netfoo_bytes", "netfoo_drops")
    apply(rezolus, new)
    assert rows_of(rezolus, "network_foo") == ("netfoo_octets",)
    apply(fresh, new)
    assert tree_bytes(rezolus) == tree_bytes(fresh)


def test_description_change_follows_only_the_registered_comment(rezolus: Path) -> None:
    apply(rezolus, NETFOO)
    renamed = Registration("network", "foo", "Counts foo frames", NETFOO.metric_names)
    # without the previous description the comment is not known to be ours
    assert plan(rezolus, renamed) == {}
    changes = plan(rezolus, renamed, previous_description=NETFOO.description)
    assert list(changes) == [rezolus / "config/agent.toml"]
    assert "# Counts foo frames\n[samplers.network_foo]\n" in changes[rezolus / "config/agent.toml"]
    # a comment edited by hand is the user's: left alone
    toml = rezolus / "config/agent.toml"
    toml.write_text(toml.read_text().replace(f"# {NETFOO.description}", "# mine"))
    assert plan(rezolus, renamed, previous_description=NETFOO.description) == {}


def test_bpf_run_metrics_and_longer_prefix(rezolus: Path) -> None:
    reg = Registration(
        "tcp",
        "packet",
        "d",
        ("rezolus_bpf_run_count", "tcp_packet_latency_extra", "tcp_packet_x"),
    )
    apply(rezolus, reg)
    rows = tuple_items(const_array(context_text(rezolus), "METRIC_SAMPLERS"))
    # would otherwise resolve to the longer sampler name tcp_packet_latency
    assert ("tcp_packet_latency_extra", "tcp_packet") in rows
    assert not any(m in ("rezolus_bpf_run_count", "tcp_packet_x") for m, _ in rows)


def test_long_metric_row_is_wrapped_like_rustfmt(rezolus: Path) -> None:
    reg = Registration("network", "foo", "d", ("network_ena_bandwidth_allowance_exceeded_foo",))
    apply(rezolus, reg)
    ctx = context_text(rezolus)
    assert (
        "    (\n"
        '        "network_ena_bandwidth_allowance_exceeded_foo",\n'
        '        "network_foo",\n'
        "    ),\n"
    ) in ctx


def test_metric_owned_by_another_sampler_is_refused(rezolus: Path) -> None:
    before = tree_bytes(rezolus)
    with pytest.raises(RegistrationError, match="tcp_traffic"):
        apply(rezolus, Registration("network", "foo", "d", ("tcp_bytes",)))
    assert tree_bytes(rezolus) == before


def test_unsorted_cpu_group(rezolus: Path) -> None:
    # cpu/mod.rs lists `cores` before `bandwidth`; insertion goes before the
    # first greater block.
    apply(rezolus, Registration("cpu", "dummy", "d", ()))
    blocks = stats_blocks(rezolus / "src/agent/samplers/cpu/mod.rs")
    assert blocks == ["cores", "bandwidth", "dummy", "frequency", "l3", "migrations",
                      "perf", "tlb_flush", "usage"]
    assert (
        "# d\n[samplers.cpu_dummy]\n\n# Performance Counter based sampler that gathers APERF"
        in (rezolus / "config/agent.toml").read_text()
    )


def test_mod_inserted_among_mods_in_file_with_helpers(rezolus: Path) -> None:
    apply(rezolus, Registration("syscall", "errors", "d", ()))
    text = (rezolus / "src/agent/samplers/syscall/linux/mod.rs").read_text()
    assert text.startswith("mod counts;\nmod errors;\nmod latency;\n\npub const MAX_SYSCALL_ID")


@pytest.mark.parametrize(
    "group,sampler,match",
    [
        ("gpu", "foo", "mod stats"),  # group without a non-Linux fallback block
        ("drivehealth", "foo", "per-sampler"),  # fallback is a bare include!
        ("rezolus", "foo", "linux"),  # group without linux/mod.rs
    ],
)
def test_missing_anchor_raises_and_writes_nothing(
    rezolus: Path, group: str, sampler: str, match: str
) -> None:
    before = tree_bytes(rezolus)
    with pytest.raises(RegistrationError, match=match):
        apply(rezolus, Registration(group, sampler, "d", ()))
    assert tree_bytes(rezolus) == before


def test_missing_agent_toml_raises(rezolus: Path) -> None:
    (rezolus / "config/agent.toml").unlink()
    before = tree_bytes(rezolus)
    with pytest.raises(RegistrationError, match="agent.toml"):
        apply(rezolus, NETFOO)
    assert tree_bytes(rezolus) == before


@pytest.mark.parametrize(
    "damage,named",
    [
        (("src/analysis/extract/context.rs", None), "context.rs does not exist"),
        (("src/analysis/extract/golden.rs", None), "golden.rs does not exist"),
        (("src/analysis/extract/context.rs", "BPF_SAMPLERS"), "BPF_SAMPLERS"),
        (("src/analysis/extract/context.rs", "METRIC_SAMPLERS"), "METRIC_SAMPLERS"),
        (("src/analysis/extract/golden.rs", "subsystems_absent"), "subsystems_absent"),
        (("build.rs", "SOURCES"), "SOURCES"),
    ],
)
def test_missing_registration_anchor_is_refused(rezolus: Path, damage, named) -> None:
    """Every file and list a sampler is registered in is required (no partial
    registration): the refusal names what was looked for."""
    rel, anchor = damage
    path = rezolus / rel
    if anchor is None:
        path.unlink()
    else:
        path.write_text(path.read_text().replace(anchor, anchor.lower() + "_renamed"))
    before = tree_bytes(rezolus)
    with pytest.raises(RegistrationError, match=named):
        apply(rezolus, NETFOO)
    assert tree_bytes(rezolus) == before


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(group="Network"),
        dict(group="1net"),
        dict(group="net-work"),
        dict(sampler=""),
        dict(sampler="type"),
        dict(description="two\nlines"),
        dict(metric_names=("Bad-Metric",)),
        dict(metric_names="network_foo_packets"),
    ],
)
def test_bad_input_refused(rezolus: Path, kwargs: dict) -> None:
    args = dict(group="network", sampler="foo", description="d", metric_names=())
    args.update(kwargs)
    before = tree_bytes(rezolus)
    with pytest.raises(RegistrationError):
        apply(rezolus, Registration(**args))
    assert tree_bytes(rezolus) == before


def test_bad_input_via_cli(rezolus: Path, capsys) -> None:
    before = tree_bytes(rezolus)
    rc = main(["--root", str(rezolus), "--group", "network", "--sampler", "Foo"])
    assert rc == 1
    assert "invalid sampler" in capsys.readouterr().err
    rc = main(["--root", str(rezolus), "--group", "network", "--sampler", "foo",
               "--metric", "ok_metric", "--metric", "no way"])
    assert rc == 1
    assert tree_bytes(rezolus) == before


@pytest.mark.parametrize("reg", [NETFOO, GADGET], ids=["existing-group", "new-group"])
def test_atomic_rollback_at_every_write(rezolus: Path, monkeypatch, reg: Registration) -> None:
    """A write that fails at any point (journal or target file) leaves every file
    and directory as it was, and no temporary file or journal behind."""
    before = tree_bytes(rezolus)
    dirs_before = tree_dirs(rezolus)
    real_replace = os.replace
    n_writes = len(plan(rezolus, reg)) + 2  # + the journal's two saves
    for fail_at in range(1, n_writes + 1):
        calls = {"n": 0}

        def flaky_replace(src, dst):
            calls["n"] += 1
            if calls["n"] == fail_at:
                raise OSError(1, "simulated disk failure")
            return real_replace(src, dst)

        monkeypatch.setattr(register.os, "replace", flaky_replace)
        with pytest.raises((OSError, RegistrationError), match="simulated"):
            apply(rezolus, reg)
        monkeypatch.setattr(register.os, "replace", real_replace)
        assert tree_bytes(rezolus) == before, fail_at
        assert tree_dirs(rezolus) == dirs_before, fail_at
    assert apply(rezolus, reg)  # and the tree still takes the registration


def test_file_mode_preserved(rezolus: Path) -> None:
    os.chmod(rezolus / "build.rs", 0o640)
    apply(rezolus, NETFOO)
    assert stat.S_IMODE((rezolus / "build.rs").stat().st_mode) == 0o640


def test_non_rezolus_dir_cli(tmp_path: Path, capsys) -> None:
    d = tmp_path / "not_rezolus"
    d.mkdir()
    (d / "README.md").write_text("hello\n")
    before = tree_bytes(d)
    rc = main(["--root", str(d), "--group", "network", "--sampler", "foo",
               "--description", "d", "--metric", "network_foo_x"])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"rezolus-sampler: registration of network_foo failed: {d} is not the root of a "
        'Rezolus checkout: no Cargo.toml with [package] name = "rezolus"; no build.rs; '
        "no src/agent/samplers/mod.rs; nothing was changed"
    ]
    assert tree_bytes(d) == before
    with pytest.raises(RegistrationError, match="not the root of a Rezolus checkout"):
        apply(d, NETFOO)


def test_inside_a_tree_names_its_root(rezolus: Path) -> None:
    assert register.tree_refusal(rezolus) == ""
    assert register.tree_refusal(rezolus / "src") == (
        f"{rezolus / 'src'} is inside the Rezolus checkout {rezolus}, not at its root; "
        f"give {rezolus} as the destination"
    )


def test_answers_file_registers_the_model_sampler(rezolus: Path, tmp_path: Path, capsys) -> None:
    sampler_dir = rezolus / "src/agent/samplers/widgets/linux/gadget"
    sampler_dir.mkdir(parents=True)
    answers = sampler_dir / ".copier-answers.yml"
    answers.write_text(
        "group: widgets\nsampler: gadget\ndescription: Counts gadget forks\n"
        "tracepoints: [sched:sched_process_fork]\n"
        "counters:\n- name: gadget_forks\n  description: Forks\n"
        "  increments: [sched:sched_process_fork]\n"
    )
    reg = register.registration_from_answers(answers.relative_to(rezolus), rezolus)
    assert (reg.name, reg.metric_names) == ("widgets_gadget", ("gadget_forks",))
    assert main(["--root", str(rezolus), "--answers", str(answers.relative_to(rezolus))]) == 0
    context = (rezolus / "src/analysis/extract/context.rs").read_text()
    assert '("gadget_forks", "widgets_gadget")' in context
    # invalid answers are refused with the model's message and nothing written
    answers.write_text("group: Widgets\n")
    before = tree_bytes(rezolus)
    assert main(["--root", str(rezolus), "--answers", str(answers.relative_to(rezolus))]) == 1
    assert "snake_case" in capsys.readouterr().err
    assert tree_bytes(rezolus) == before
    # a missing answers file is named
    assert main(["--root", str(rezolus), "--answers", "missing.yml"]) == 1
    assert "cannot read answers" in capsys.readouterr().err


def test_cli_end_to_end_as_script(rezolus: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable, str(SCRIPT), "--root", str(rezolus),
        "--group", "widgets", "--sampler", "gadget",
        "--description", "BPF sampler for gadget widgets",
        "--metric", "widgets_gadget_events", "--metric", "gadget_latency",
    ]
    # run from an unrelated cwd so the script cannot lean on the project path
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines() == [
        "register: widgets_gadget registered: updated build.rs, src/agent/samplers/mod.rs, "
        "config/agent.toml, src/analysis/extract/context.rs, src/analysis/extract/golden.rs; "
        "created src/agent/samplers/widgets/linux/mod.rs, src/agent/samplers/widgets/mod.rs"
    ]
    snap = tree_bytes(rezolus)

    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "register: widgets_gadget already registered"
    assert tree_bytes(rezolus) == snap

    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(tmp_path / "nowhere"),
         "--group", "a", "--sampler", "b"],
        capture_output=True, text=True,
    )
    assert r.returncode == 1
    assert "is not the root of a Rezolus checkout" in r.stderr
    assert "Traceback" not in r.stderr
