"""Render every example and an attach-style x layout matrix into a scratch
Rezolus tree, then check what Rezolus' build and reviewers would check."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import require_tool
from support import (
    ARCHES,
    CASES,
    EXAMPLES,
    clang_command,
    default_answers,
    load_answers,
    render,
    rezolus_dir,
    tree_snapshot,
)

from rezolus_sampler.emit import histogram_c
from rezolus_sampler.kernel import bpf

pytestmark = pytest.mark.skipif(rezolus_dir() is None, reason="no Rezolus checkout")


def read(path: Path) -> str:
    return path.read_text()


# ---------------------------------------------------------------- rendered text parsers


def rust_vectors(mod_rs: str) -> dict[str, list[str]]:
    """`let <map> = vec![ &A, &B ];` -> {map: [A, B]}."""
    return {
        name: re.findall(r"&([A-Z0-9_]+),", body)
        for name, body in re.findall(r"let (\w+) = vec!\[(.*?)\];", mod_rs, re.S)
    }


def c_widths(c: str) -> dict[str, int]:
    """Map name -> W: a map of MAX_CPUS banks, each `struct { u64 slot[X_WIDTH]; }`."""
    defines = dict(re.findall(r"#define (\w+) (\d+)\n", c))
    banks = dict(re.findall(r"struct (\w+) \{\n    u64 slot\[(\w+)\];\n\};", c))
    maps = re.findall(
        r"__type\(value, struct (\w+)\);\n    __uint\(max_entries, MAX_CPUS\);\n\} (\w+) SEC", c
    )
    return {name: int(defines[banks[bank]]) for bank, name in maps}


def c_slot_table(c: str, map_name: str) -> list[str]:
    """The `//     0  metric{labels}` lines documented for one map, in order."""
    block = c.split(f"// {map_name}: ", 1)[1].split("#define", 1)[0]
    return [m.replace(" ", "") for m in re.findall(r"^//\s+\d+  (.+)$", block, re.M)]


def c_programs(c: str) -> list[tuple[str, str]]:
    """(section, program name) for every program."""
    progs = re.findall(r'SEC\("([^"]+)"\)\nint (?:BPF_PROG\()?(\w+)', c)
    return [(sec, name) for sec, name in progs if sec not in (".maps", "license")]


def stats_metrics(stats: str) -> dict[str, str]:
    """Static name -> `metric{labels}` as the C slot table writes it."""
    out = {}
    pattern = r'#\[metric\(\s*name = "(\w+)",.*?metadata = \{ (.*?) \}\s*\)\]\npub static (\w+):'
    for metric, meta, static in re.findall(pattern, stats, re.S):
        pairs = re.findall(r'(\w+) = "([^"]*)"', meta)
        labels = [f"{k}={v}" for k, v in pairs if k not in ("unit", "acq_group", "sampler")]
        out[static] = f"{metric}{{{','.join(labels)}}}" if labels else metric
    return out


# ---------------------------------------------------------------- build checks


@pytest.mark.parametrize("arch", ARCHES)
def test_examples_compile_with_rezolus_flags(rendered, arch, tmp_path):
    require_tool("clang")
    tree, dirs = rendered
    for case, directory in dirs.items():
        cmd = clang_command(tree, directory / "mod.bpf.c", tmp_path / f"{case}.o", arch)
        result = subprocess.run(cmd, capture_output=True, text=True)
        assert result.returncode == 0, f"{case} ({arch}):\n{result.stderr}"


def test_c_is_clang_format_clean(rendered):
    require_tool("clang-format")
    tree, dirs = rendered
    for case, directory in dirs.items():
        source = directory / "mod.bpf.c"
        formatted = subprocess.run(
            ["clang-format", f"--style=file:{tree / '.clang-format'}", str(source)],
            capture_output=True, text=True, check=True,
        ).stdout
        assert formatted == read(source), f"{case}: clang-format would change mod.bpf.c"


def test_rust_is_rustfmt_clean(rendered):
    require_tool("rustfmt")
    _, dirs = rendered
    for case, directory in dirs.items():
        for name in ("mod.rs", "stats.rs"):
            result = subprocess.run(
                ["rustfmt", "--edition", "2021", "--check", str(directory / name)],
                capture_output=True, text=True,
            )
            assert result.returncode == 0, f"{case}/{name}:\n{result.stdout}{result.stderr}"


def test_bank_width_is_roundup_of_vector_length(rendered):
    _, dirs = rendered
    for case, directory in dirs.items():
        vectors = rust_vectors(read(directory / "mod.rs"))
        widths = c_widths(read(directory / "mod.bpf.c"))
        assert set(vectors) == set(widths), case
        assert vectors or CASES[case].get("histograms"), f"{case}: no counters map"
        for map_name, statics in vectors.items():
            n = len(statics)
            assert widths[map_name] == -(-n // 8) * 8, f"{case}: {map_name} n={n}"


def test_mod_rs_names_exist_in_bpf_and_stats(rendered):
    _, dirs = rendered
    for case, directory in dirs.items():
        c, mod_rs, stats = (read(directory / f) for f in ("mod.bpf.c", "mod.rs", "stats.rs"))
        statics = set(re.findall(r"pub static (\w+):", stats))
        c_maps = set(re.findall(r"\} (\w+) SEC\(\"\.maps\"\)", c))
        programs = {name for _, name in c_programs(c)}
        metrics = stats_metrics(stats)
        # every static mod.rs references exists, in slot order
        for map_name, vector in rust_vectors(mod_rs).items():
            assert set(vector) <= statics, case
            assert [metrics[s].replace(" ", "") for s in vector] == c_slot_table(c, map_name)
        for ref in re.findall(r"&([A-Z][A-Z0-9_]+)\b", mod_rs):
            assert ref in statics, f"{case}: {ref} not in stats.rs"
        # every mmapable map is handed to the builder and has a SkelExt arm, and only
        # those (start-time maps stay in the kernel)
        mmapable = set(re.findall(r"BPF_F_MMAPABLE\);\n(?:    .*\n)*?\} (\w+) SEC", c))
        builder_maps = set(re.findall(r'\.(?:cpu_)?counters\("(\w+)"', mod_rs))
        builder_maps |= set(re.findall(r'\.histogram\(\s*"(\w+)"', mod_rs))
        skel_maps = set(re.findall(r'"(\w+)" => &self\.maps\.(\w+)', mod_rs))
        assert builder_maps == mmapable and mmapable <= c_maps, case
        assert {a for a, b in skel_maps} == mmapable and all(a == b for a, b in skel_maps)
        # every program named in mod.rs exists in C
        named = set(re.findall(r'"(\w+_(?:btf|raw))"', mod_rs))
        named |= set(re.findall(r"self\.progs\.(\w+)\.insn_cnt", mod_rs))
        assert named <= programs and named, f"{case}: {named - programs}"
        # twins: the two arms of disabled_programs partition the programs
        arms = re.search(r"kernel_has_btf\(\) \{(.*?)\} else \{(.*?)\}\)", mod_rs, re.S)
        if arms:
            raw = set(re.findall(r'"(\w+)"', arms.group(1)))
            btf = set(re.findall(r'"(\w+)"', arms.group(2)))
            assert raw | btf == programs and not raw & btf, case
            assert all(p.endswith("_raw") for p in raw) and all(p.endswith("_btf") for p in btf)


def test_histograms_are_wired_as_rezolus_reads_them(rendered):
    """Each `.histogram(map, &STATIC, &GROUP)`: a 496-bucket mmapable ARRAY in C, an
    RwLockHistogram(HISTOGRAM_GROUPING_POWER, 64) static whose metadata names that
    group, and one group per family (P9, P12)."""
    seen = 0
    for case, directory in rendered[1].items():
        c, mod_rs, stats = (read(directory / f) for f in ("mod.bpf.c", "mod.rs", "stats.rs"))
        calls = re.findall(r'\.histogram\(\s*"(\w+)",\s*&(\w+),\s*&(\w+),?\s*\)', mod_rs)
        if not calls:
            continue
        seen += 1
        assert "#define HISTOGRAM_BUCKETS 496" in c
        assert histogram_c.index_function() in c  # the measured, proven index (test_histogram_index)
        assert "use crate::common::HISTOGRAM_GROUPING_POWER;" in stats
        groups_by_family: dict[str, set[str]] = {}
        for map_name, static, group in calls:
            body = re.search(rf"struct \{{\n((?:    .*\n)*?)\}} {map_name} SEC", c).group(1)
            assert "BPF_MAP_TYPE_ARRAY" in body and "BPF_F_MMAPABLE" in body, (case, map_name)
            assert "__uint(max_entries, HISTOGRAM_BUCKETS);" in body, (case, map_name)
            decl = re.search(
                rf'#\[metric\(\s*name = "(\w+)",.*?acq_group = "(\w+)" \}}\s*\)\]\n'
                rf"pub static {static}: RwLockHistogram =\s*RwLockHistogram::new\(HISTOGRAM_GROUPING_POWER, 64\);",
                stats, re.S,
            )
            assert decl, (case, static)
            family, acq = decl.groups()
            group_name = re.search(rf'pub static {group}: AcquisitionGroup = AcquisitionGroup::new\(\s*'
                                   rf'crate::agent::samplers::bpf_sampler_name\("\w+"\),\s*"(\w+)"', stats)
            assert group_name and group_name.group(1) == acq, (case, group)
            groups_by_family.setdefault(family, set()).add(group)
        assert all(len(g) == 1 for g in groups_by_family.values()), case
        assert len({next(iter(g)) for g in groups_by_family.values()}) == len(groups_by_family)
    assert seen >= 3, "the histogram examples did not render"


def test_one_program_per_hook(rendered):
    _, dirs = rendered
    for case, directory in dirs.items():
        sections = [sec for sec, _ in c_programs(read(directory / "mod.bpf.c"))]
        assert len(sections) == len(set(sections)), f"{case}: a hook has two programs"
        events = {}
        for sec in sections:
            kind, event = sec.split("/", 1)[0], sec.rsplit("/", 1)[1]
            events.setdefault(kind, []).append(event)
        for kind, names in events.items():
            assert len(names) == len(set(names)), f"{case}: two {kind} programs on one event"


def test_generated_c_has_no_hash_maps_ringbufs_or_loops(rendered):
    _, dirs = rendered
    for case, directory in dirs.items():
        c = read(directory / "mod.bpf.c")
        for banned in ("BPF_MAP_TYPE_HASH", "RINGBUF", "PERF_EVENT_ARRAY", "PERCPU_ARRAY",
                       "for (", "while (", "bpf_spin_lock", "bpf_ringbuf", "bpf_perf_event_output"):
            assert banned not in c, f"{case}: {banned}"
        assert c.count('#include "../../../agent/bpf/helpers.h"') <= 1
        # helpers.h includes histogram.h itself: never both
        includes = re.findall(r'^#include "(.*)"$', c, re.M)
        assert not any("helpers.h" in i for i in includes) or not any("histogram.h" in i for i in includes)
        assert "BPF_MAP_TYPE_ARRAY" in c and "BPF_F_MMAPABLE" in c


def test_verifier_accepts_every_program(rendered, tmp_path):
    require_tool("clang")
    ok, reason = bpf.bpf_available()
    if not ok:
        pytest.skip(f"cannot load BPF here: {reason}")
    tree, dirs = rendered
    for case, directory in dirs.items():
        obj = tmp_path / f"{case}.o"
        bpf.compile_bpf(directory / "mod.bpf.c", obj, tree)
        with bpf.BpfObject.open(obj) as probe:
            names = probe.program_names()
        variants = [[n for n in names if n.endswith(v)] for v in ("_btf", "_raw")]
        for keep in [v for v in variants if v] or [names]:
            with bpf.BpfObject.open(obj) as loaded:
                for name in names:
                    loaded.set_autoload(name, name in keep)
                loaded.load()  # raises with the verifier log
                for name in keep:
                    assert loaded.prog_info(name).verified_insns > 0, f"{case}: {name}"


# ---------------------------------------------------------------- registration


def registration_lines(tree: Path, group: str, sampler: str) -> dict[str, int]:
    name = f"{group}_{sampler}"
    samplers = tree / "src/agent/samplers"
    context = read(tree / "src/analysis/extract/context.rs")
    return {
        "build.rs": read(tree / "build.rs").count(f'("{group}", "{sampler}"),'),
        "linux/mod.rs": read(samplers / group / "linux/mod.rs").count(f"mod {sampler};"),
        "group fallback": read(samplers / group / "mod.rs").count(
            f'include!("./linux/{sampler}/stats.rs");'
        ),
        "agent.toml": read(tree / "config/agent.toml").count(f"[samplers.{name}]"),
        "context.rs": context.count(f'"{name}",'),  # EXPECTED_SUBSYSTEMS + BPF_SAMPLERS
        "golden.rs": read(tree / "src/analysis/extract/golden.rs").count(f'"{name}"'),
    }


def without_template_commit(snapshot: dict[str, bytes]) -> dict[str, bytes]:
    """Drop Copier's `_commit:` record: a dirty template checkout (a developer's
    work in progress) gets a fresh synthetic commit on every copy."""
    return {
        path: re.sub(rb"(?m)^_commit: .*$", b"", data) if path.endswith(".copier-answers.yml") else data
        for path, data in snapshot.items()
    }


def test_registration_present_once_after_two_runs(tree):
    answers = default_answers()
    render(tree, answers)
    first = without_template_commit(tree_snapshot(tree))
    render(tree, answers, overwrite=True)
    assert without_template_commit(tree_snapshot(tree)) == first, "a second run changed the tree"
    counts = registration_lines(tree, answers["group"], answers["sampler"])
    assert counts == {
        "build.rs": 1, "linux/mod.rs": 1, "group fallback": 1,
        "agent.toml": 1, "context.rs": 2, "golden.rs": 1,
    }


def test_rezolus_sampler_lists_updated(rendered):
    tree, _ = rendered
    build_rs = read(tree / "build.rs")
    sources = re.findall(r'\("(\w+)", "(\w+)"\),', build_rs.split("const SOURCES", 1)[1])
    assert sources == sorted(sources), "SOURCES must stay sorted"
    context = read(tree / "src/analysis/extract/context.rs")
    expected = re.findall(r'"(\w+)",', context.split("EXPECTED_SUBSYSTEMS: &[&str] = &[")[1].split("];")[0])
    assert expected == sorted(expected)
    golden = read(tree / "src/analysis/extract/golden.rs")
    absent = re.findall(r'"(\w+)"', golden.split('"subsystems_absent": [')[1].split("]")[0])
    present = re.findall(r'"(\w+)"', golden.split('"subsystems_present": [')[1].split("]")[0])
    assert sorted(absent + present) == expected, "golden coverage must equal EXPECTED_SUBSYSTEMS"
    for case, answers in CASES.items():
        name = f"{answers['group']}_{answers['sampler']}"
        assert (answers["group"], answers["sampler"]) in sources, case
        assert name in expected, case
    # a metric not prefixed by its sampler's name needs a METRIC_SAMPLERS row
    table = context.split("METRIC_SAMPLERS: &[(&str, &str)] = &[")[1].split("];")[0]
    rows = dict(re.findall(r'\("(\w+)",\s*"(\w+)"\)', table))
    assert rows.get("network_bytes") == "network_traffic"


# ---------------------------------------------------------------- refusals

BAD = [
    ({"group": "Network"}, "snake_case"),
    ({"sampler": "match"}, "keyword"),
    ({"sampler": "../evil"}, "snake_case"),
    ({"tracepoints": ["sched:sched_process_forkk"]}, "did you mean sched_process_fork"),
    ({"description": 'Counts "quoted" things'}, "build.rs metric parser"),
    ({"description": "Counts things )] badly"}, "build.rs metric parser"),
    ({"counters": [{"name": "a_b", "description": "x", "increments": ["sched:sched_process_fork"]},
                   {"name": "a_b", "description": "y", "increments": ["sched:sched_process_exec"]}]},
     "declared twice"),
    ({"counters": [{"name": "a_b", "description": "x", "labels": {"q": 64, "r": 64},
                    "increments": [{"at": "sched:sched_process_fork", "index": {"q": "1", "r": "2"}}]}]},
     "label combinations"),
    ({"counters": [{"name": "a_b", "description": "x", "labels": {"q": 4},
                    "increments": [{"at": "sched:sched_process_fork", "index": {"q": "1; x = 2"}}]}]},
     "statement separator"),
    ({"counters": [dict(default_answers()["counters"][0], name="network_bytes")]},
     "already declared by network"),
]


@pytest.mark.parametrize("change,message", BAD, ids=[m for _, m in BAD])
def test_bad_answers_refused_tree_unchanged(tree, change, message):
    before = tree_snapshot(tree)
    answers = default_answers() | change
    if "counters" in change and "tracepoints" not in change:
        answers["tracepoints"] = default_answers()["tracepoints"]
    with pytest.raises(Exception) as err:
        render(tree, answers)
    assert message in str(err.value)
    assert tree_snapshot(tree) == before, "a refused render wrote files"


def test_existing_sampler_not_overwritten(tree):
    render(tree, default_answers())
    before = tree_snapshot(tree)
    with pytest.raises(Exception) as err:
        render(tree, default_answers() | {"description": "Something else entirely"})
    assert "already exists" in str(err.value) and "--overwrite" in str(err.value)
    assert tree_snapshot(tree) == before


def test_hand_written_sampler_protected(tree):
    before = tree_snapshot(tree)
    with pytest.raises(Exception) as err:
        render(tree, load_answers(EXAMPLES[[p.stem for p in EXAMPLES].index("network_traffic")]))
    assert "src/agent/samplers/network/linux/traffic already exists" in str(err.value)
    assert tree_snapshot(tree) == before


def test_answers_recorded_per_sampler(rendered):
    _, dirs = rendered
    for case, directory in dirs.items():
        recorded = load_answers(directory / ".copier-answers.yml")
        for key, value in CASES[case].items():
            assert recorded[key] == value, f"{case}: {key}"


def test_layout_rules_alone_are_format_clean(monkeypatch, tmp_path):
    """Rendering runs the formatters when they are installed; without them the
    layout rules (emit/lines.py) must still give format-clean files for every case."""
    require_tool("clang-format")
    require_tool("rustfmt")
    from support import render_files

    monkeypatch.setenv("REZOLUS_SAMPLER_NO_FORMAT", "1")
    style = f"--style=file:{rezolus_dir() / '.clang-format'}"
    for case, answers in CASES.items():
        files = render_files(answers, rezolus_dir())
        c = subprocess.run(["clang-format", style, "--assume-filename=mod.bpf.c"],
                           input=files["mod.bpf.c"], capture_output=True, text=True, check=True)
        assert c.stdout == files["mod.bpf.c"], f"{case}: the layout rules leave clang-format work"
        directory = tmp_path / case
        directory.mkdir()
        for name in ("mod.rs", "stats.rs"):
            (directory / name).write_text(files[name])
        for name in ("mod.rs", "stats.rs"):
            rs = subprocess.run(["rustfmt", "--edition", "2021", "--check", str(directory / name)],
                                capture_output=True, text=True)
            assert rs.returncode == 0, f"{case}/{name}: {rs.stdout[-2000:]}{rs.stderr[-500:]}"
