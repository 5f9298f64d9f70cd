"""rustc type-checks every rendered sampler's mod.rs and stats.rs.

A full Rezolus build needs the crate registry; this builds instead a crate
from tests/rust_shim/: stand-ins for metriken, linkme, libbpf-rs, anyhow and
tracing (path dependencies only), and a `crate::agent` module with the real
signatures of BpfBuilder, SkelExt, SamplerEntry and friends. Each sampler is
mounted at `crate::agent::samplers::<group>::linux::<sampler>` (its `mod
stats;` resolving to the rendered stats.rs) and again in the non-Linux
fallback shape `mod stats { mod <sampler> { include!(".../stats.rs"); } }`,
beside a fake libbpf-cargo skeleton written from its compiled BPF object, so
a map or program name that the object lacks does not compile.

Rezolus' own hand-written histogram sampler (blockio/requests: `.histogram`,
`RwLockHistogram` statics, `crate::common::HISTOGRAM_GROUPING_POWER`) is mounted
unchanged beside the rendered ones, so the shim's histogram API is checked
against the real thing.

Negative controls prove each check can fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import CASES, clang_command

SHIM = Path(__file__).resolve().parent / "rust_shim"
TARGET = SHIM / "target"  # shared and git-ignored, so stub crates build once
CRATES = ("anyhow", "libbpf-rs", "linkme", "metriken", "tracing")
TOOLS = ("cargo", "rustc", "clang", "llvm-objdump")
# hand-written samplers of the snapshot mounted as they are: case -> (group, sampler)
HAND_WRITTEN = {"hand_blockio_requests": ("blockio", "requests")}


@dataclass
class BpfObject:
    maps: list[str]
    programs: list[str]


# -- fake libbpf-cargo skeleton -------------------------------------------------

SYMBOL = re.compile(r"^[0-9a-f]+ (?P<flags>.{7}) (?P<section>\S+)\t[0-9a-f]+ (?P<name>\S+)$")
SECTION = re.compile(r"^\s*\d+ (?P<name>\S+)\s+(?P<size>[0-9a-f]+) [0-9a-f]+")
INTERNAL = (".rodata", ".data", ".bss", ".kconfig")


def read_object(obj: Path) -> BpfObject:
    """Map names (`.maps` symbols and non-empty internal sections) and program
    names (global functions outside `.text`) of a compiled BPF object, as
    libbpf-cargo names the skeleton's fields."""
    symbols = subprocess.run(
        ["llvm-objdump", "-t", str(obj)], capture_output=True, text=True, check=True
    )
    maps, programs = [], []
    for line in symbols.stdout.splitlines():
        m = SYMBOL.match(line)
        if not m:
            continue
        flags, section, name = m["flags"], m["section"], m["name"]
        if flags[0] != "g":
            continue
        if flags[6] == "O" and section == ".maps":
            maps.append(name)
        elif flags[6] == "F" and section != ".text" and not section.startswith("."):
            programs.append(name)
    headers = subprocess.run(
        ["llvm-objdump", "--section-headers", str(obj)], capture_output=True, text=True, check=True
    )
    for line in headers.stdout.splitlines():
        m = SECTION.match(line)
        name = m["name"] if m else ""
        if (
            m
            and int(m["size"], 16)
            and name.startswith(".")
            and "." + name.split(".")[1] in INTERNAL
        ):
            maps.append(name.lstrip(".").replace(".", "_"))
    return BpfObject(maps=maps, programs=programs)


def skeleton(name: str, obj: BpfObject) -> str:
    """The libbpf-cargo skeleton's shape: `ModSkelBuilder` (Default +
    SkelBuilder) opening an `OpenModSkel` that loads into `ModSkel<'obj>`,
    whose `maps`/`progs` have one field per map/program of the object."""
    maps = "".join(f"        pub {m}: libbpf_rs::Map<'obj>,\n" for m in obj.maps)
    progs = "".join(f"        pub {p}: libbpf_rs::Program<'obj>,\n" for p in obj.programs)
    return f"""\
// Fake libbpf-cargo skeleton for {name}, written by tests/test_rust_typecheck.py
// from the compiled object: maps {obj.maps}, programs {obj.programs}.

pub use self::imp::*;

#[allow(dead_code)]
#[allow(non_snake_case)]
#[allow(non_camel_case_types)]
mod imp {{
    use libbpf_rs::skel::OpenSkel;
    use libbpf_rs::skel::Skel;
    use libbpf_rs::skel::SkelBuilder;
    use std::marker::PhantomData;
    use std::mem::MaybeUninit;

    #[derive(Default)]
    pub struct ModSkelBuilder {{
        _private: (),
    }}

    impl<'obj> SkelBuilder<'obj> for ModSkelBuilder {{
        type Output = OpenModSkel<'obj>;

        fn open(
            self,
            _object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
        ) -> libbpf_rs::Result<OpenModSkel<'obj>> {{
            Err(libbpf_rs::Error::from_raw_os_error(95))
        }}
    }}

    pub struct OpenModSkel<'obj> {{
        _object: PhantomData<&'obj mut libbpf_rs::OpenObject>,
    }}

    impl<'obj> OpenSkel<'obj> for OpenModSkel<'obj> {{
        type Output = ModSkel<'obj>;

        fn load(self) -> libbpf_rs::Result<ModSkel<'obj>> {{
            Err(libbpf_rs::Error::from_raw_os_error(95))
        }}
    }}

    pub struct ModMaps<'obj> {{
{maps}        _object: PhantomData<&'obj libbpf_rs::OpenObject>,
    }}

    pub struct ModProgs<'obj> {{
{progs}        _object: PhantomData<&'obj libbpf_rs::OpenObject>,
    }}

    pub struct ModSkel<'obj> {{
        pub maps: ModMaps<'obj>,
        pub progs: ModProgs<'obj>,
    }}

    impl<'obj> Skel<'obj> for ModSkel<'obj> {{
        fn attach(&mut self) -> libbpf_rs::Result<()> {{
            Ok(())
        }}
    }}
}}
"""


# -- the crate ------------------------------------------------------------------


@dataclass
class Sampler:
    group: str
    name: str  # the sampler's module name
    dir: Path  # holds mod.rs and stats.rs
    skel: str  # skeleton text


def write_package(root: Path, package: str, samplers: list[Sampler]) -> None:
    """A copy of tests/rust_shim/typecheck with the samplers mounted as Rezolus
    mounts them: `samplers/mod.rs` declares `mod <group>;`, the group's mod.rs
    declares `mod linux;` (here unconditionally) and the non-Linux `mod stats`
    fallback that `include!`s each stats.rs, and `linux/mod.rs` declares each
    sampler (a `#[path]` to the rendered mod.rs, so `mod stats;` resolves
    beside it). Declared, not `include!`d: a macro-expanded `mod bpf` would
    conflict with the `bpf` that `use crate::agent::*;` brings in."""
    shutil.copytree(SHIM / "typecheck" / "src", root / "src")
    shutil.copy(SHIM / "typecheck" / "build.rs", root / "build.rs")
    deps = "".join(f'{c} = {{ path = "{SHIM / "crates" / c}" }}\n' for c in CRATES)
    (root / "Cargo.toml").write_text(
        f'[package]\nname = "{package}"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n'
        f"[dependencies]\n{deps}"
    )
    samplers_dir = root / "src" / "agent" / "samplers"
    groups = sorted({s.group for s in samplers})
    with (samplers_dir / "mod.rs").open("a") as f:
        f.write("".join(f"mod {g};\n" for g in groups))
    for group in groups:
        members = sorted((s for s in samplers if s.group == group), key=lambda s: s.name)
        fallback = "\n".join(
            f'    mod {s.name} {{\n        include!("{s.dir / "stats.rs"}");\n    }}\n'
            for s in members
        )
        (samplers_dir / group / "linux").mkdir(parents=True)
        (samplers_dir / group / "mod.rs").write_text(
            f"// Rezolus gates these on target_os; the shim compiles both shapes.\n"
            f"mod linux;\n\nmod stats {{\n{fallback}}}\n"
        )
        (samplers_dir / group / "linux" / "mod.rs").write_text(
            "".join(f'#[path = "{s.dir / "mod.rs"}"]\nmod {s.name};\n' for s in members)
        )
    generated = root / "generated"
    generated.mkdir()
    for s in samplers:
        (generated / f"{s.group}_{s.name}.bpf.rs").write_text(s.skel)


def cargo(workspace: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ, CARGO_TARGET_DIR=str(TARGET), RUSTFLAGS="-D warnings", CARGO_TERM_COLOR="never"
    )
    return subprocess.run(
        ["cargo", "check", "--offline", "--message-format=json", *args],
        check=False,  # the negative controls must fail
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def errors_by_crate(stdout: str) -> dict[str, list[dict]]:
    """rustc's error diagnostics from cargo's JSON stream, by crate name."""
    found: dict[str, list[dict]] = {}
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        msg = json.loads(line)
        if msg.get("reason") == "compiler-message" and msg["message"]["level"] == "error":
            found.setdefault(msg["target"]["name"], []).append(msg["message"])
    return found


def rendered_text(messages: list[dict]) -> str:
    return "\n".join(m["rendered"] for m in messages)


# -- negative controls: (what is broken, file, edit, expected rustc error) ----------


def _rename_first_vec_static(text: str) -> str:
    new, n = re.subn(
        r"(let \w+ = vec!\[\n(?:\s*//.*\n)*\s*&)([A-Z0-9_]+),", r"\1\2_RENAMED,", text, count=1
    )
    assert n == 1, "no counter vector in mod.rs"
    return new


def _missing_map(text: str) -> str:
    new, n = re.subn(r"=> &self\.maps\.(\w+),", r"=> &self.maps.\1_missing,", text, count=1)
    assert n == 1, "no SkelExt map arm in mod.rs"
    return new


def _counters_given_groups(text: str) -> str:
    assert ".cpu_counters(" in text, "the control needs a per_cpu sampler"
    return text.replace(".cpu_counters(", ".counters(", 1)


def _missing_program(text: str) -> str:
    new, n = re.subn(
        r"self\.progs\.(\w+)\.insn_cnt\(\)", r"self.progs.\1_missing.insn_cnt()", text, count=1
    )
    assert n == 1, "no program in log_prog_instructions"
    return new


def _misspelled_metric_key(text: str) -> str:
    assert "\n    description = " in text
    return text.replace("\n    description = ", "\n    desc = ", 1)


def _histogram_given_counter(text: str) -> str:
    new, n = re.subn(r'(\.histogram\(\s*"\w+"\s*,\s*&)\w+', r"\1BPF_RUN_COUNT", text, count=1)
    assert n == 1, "no .histogram(...) in mod.rs"
    return new


def _histogram_config(text: str) -> str:
    new, n = re.subn(
        r"RwLockHistogram::new\((\w+), 64\)", r"RwLockHistogram::new(\1, 65)", text, count=1
    )
    assert n == 1, "no RwLockHistogram::new(.., 64) in stats.rs"
    return new


def _slice_type(text: str) -> str:
    old = "#[distributed_slice(crate::agent::samplers::ACQUISITION_GROUPS)]"
    assert old in text
    return text.replace(old, "#[distributed_slice(crate::agent::samplers::SAMPLERS)]", 1)


NEGATIVE = {
    # name: (layout needed, file, edit, regexes every one of which rustc's errors must match)
    "renamed_static": (
        None,
        "mod.rs",
        _rename_first_vec_static,
        [r"E0425", r"cannot find value `\w+_RENAMED`"],
    ),
    "missing_map": (None, "mod.rs", _missing_map, [r"E0609", r"no field `\w+_missing`"]),
    "counters_given_groups": (
        "per_cpu",
        "mod.rs",
        _counters_given_groups,
        [r"E0308", r"expected `Vec<&LazyCounter>`, found `Vec<&CounterGroup>`"],
    ),
    "missing_program": (None, "mod.rs", _missing_program, [r"E0609", r"no field `\w+_missing`"]),
    "metric_syntax": (
        None,
        "stats.rs",
        _misspelled_metric_key,
        [r"unknown #\[metric\] argument `desc`"],
    ),
    "slice_element_type": (None, "stats.rs", _slice_type, [r"E0308", r"SamplerEntry"]),
    "histogram_given_counter": (
        "histogram",
        "mod.rs",
        _histogram_given_counter,
        [r"E0308", r"expected `&RwLockHistogram`, found `&LazyCounter`"],
    ),
    "histogram_config": (
        "histogram",
        "stats.rs",
        _histogram_config,
        [r"E0080", r"invalid histogram config"],
    ),
}


def case_fits(case: str, sampler: "Sampler", need: str | None) -> bool:
    """Whether a case can carry a negative control that needs `need`."""
    if need is None:
        return True
    if need == "histogram":
        return ".histogram(" in (sampler.dir / "mod.rs").read_text()
    return case in CASES and CASES[case].get("layout", "totals") == need


@pytest.fixture(scope="module")
def typecheck(rendered, tmp_path_factory):
    """Compile every case's BPF object, write the crates, run cargo twice:
    the real samplers (must pass), then every negative control (each must fail)."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH")
    tree, dirs = rendered
    dirs = dict(dirs) | {
        case: tree / "src" / "agent" / "samplers" / group / "linux" / name
        for case, (group, name) in HAND_WRITTEN.items()
    }
    work = tmp_path_factory.mktemp("rust_typecheck")
    samplers: dict[str, Sampler] = {}
    for case, sampler_dir in dirs.items():
        group, name = sampler_dir.parent.parent.name, sampler_dir.name
        obj = work / "obj" / f"{group}_{name}.o"
        obj.parent.mkdir(exist_ok=True)
        subprocess.run(clang_command(tree, sampler_dir / "mod.bpf.c", obj, "x86_64"), check=True)
        samplers[case] = Sampler(
            group, name, sampler_dir, skeleton(f"{group}_{name}", read_object(obj))
        )

    write_package(work / "ok", "typecheck-ok", list(samplers.values()))
    negatives = {}
    for neg, (layout, file, edit, _) in NEGATIVE.items():
        case = next(c for c in sorted(samplers) if case_fits(c, samplers[c], layout))
        src = samplers[case]
        copy = work / "neg_src" / neg / src.group / "linux" / src.name
        copy.mkdir(parents=True)
        for f in ("mod.rs", "stats.rs"):
            text = (src.dir / f).read_text()
            (copy / f).write_text(edit(text) if f == file else text)
        write_package(
            work / f"neg_{neg}",
            f"typecheck-neg-{neg.replace('_', '-')}",
            [Sampler(src.group, src.name, copy, src.skel)],
        )
        negatives[neg] = case
    members = ", ".join(
        f'"{p.name}"' for p in sorted(work.iterdir()) if (p / "Cargo.toml").exists()
    )
    (work / "Cargo.toml").write_text(f'[workspace]\nresolver = "2"\nmembers = [{members}]\n')

    ok = cargo(work, "-p", "typecheck-ok")
    neg_args = [a for neg in NEGATIVE for a in ("-p", f"typecheck-neg-{neg.replace('_', '-')}")]
    bad = cargo(work, "--keep-going", *neg_args)
    return {"ok": ok, "bad": bad, "negatives": negatives, "samplers": samplers, "work": work}


def test_rendered_samplers_typecheck(typecheck):
    ok = typecheck["ok"]
    errors = errors_by_crate(ok.stdout)
    warnings = [
        line
        for line in ok.stdout.splitlines()
        if '"level":"warning"' in line and '"reason":"compiler-message"' in line
    ]
    assert ok.returncode == 0 and not warnings, (
        "rustc rejects generated sampler code:\n"
        + rendered_text(errors.get("typecheck_ok", []))
        + ok.stderr[-4000:]
    )
    assert len(typecheck["samplers"]) == len(CASES) + len(HAND_WRITTEN)


def test_hand_written_histogram_sampler_typechecks(typecheck):
    """The shim compiles Rezolus' own `.histogram` registrations and
    `RwLockHistogram` statics unchanged (the generated ones follow them)."""
    ok = typecheck["ok"]
    mounted = [typecheck["samplers"][case] for case in HAND_WRITTEN]
    assert all(".histogram(" in (s.dir / "mod.rs").read_text() for s in mounted)
    assert all("RwLockHistogram::new(" in (s.dir / "stats.rs").read_text() for s in mounted)
    inside = [
        m["rendered"]
        for m in errors_by_crate(ok.stdout).get("typecheck_ok", [])
        if any(Path(sp["file_name"]).is_relative_to(s.dir) for s in mounted for sp in m["spans"])
    ]
    assert ok.returncode == 0 and not inside, "\n".join(inside) or ok.stderr[-3000:]


@pytest.mark.parametrize("neg", sorted(NEGATIVE))
def test_negative_control_fails(typecheck, neg):
    bad = typecheck["bad"]
    assert bad.returncode != 0
    crate = f"typecheck_neg_{neg}"
    text = rendered_text(errors_by_crate(bad.stdout).get(crate, []))
    assert text, (
        f"{neg} (from {typecheck['negatives'][neg]}) compiled: the check cannot fail\n{bad.stderr[-3000:]}"
    )
    for pattern in NEGATIVE[neg][3]:
        assert re.search(pattern, text), f"{neg}: expected /{pattern}/ in:\n{text}"
    # every error points into the broken copy: none comes from the shim itself
    copy = typecheck["work"] / "neg_src" / neg
    for message in errors_by_crate(bad.stdout)[crate]:
        for span in message["spans"]:
            if span["is_primary"]:
                assert Path(span["file_name"]).is_relative_to(copy), (
                    f"{neg}: error outside the edited sampler:\n{message['rendered']}"
                )
