"""Property-based tests over the answers space (hypothesis).

Valid specs are drawn across attach styles, layouts, label kinds and sizes,
counter and histogram families, and expressions from a grammar over each
hook's typed arguments (tests/spec_strategies.py). Every one builds, and
each batch is rendered by the real templates and then: compiled with
Rezolus' flags (-Wall -Werror) for x86_64 and aarch64, checked clean under
clang-format and rustfmt, type-checked against the Rust shim, and loaded
through the kernel verifier, every program of both twins.

Invalid specs (hostile mutations of valid ones) each give one SpecError
naming a field: never another exception.

`make test` runs a fixed, bounded number of examples, derandomized;
`REZOLUS_SAMPLER_EXAMPLES=<n>` runs n batches (and n*20 mutations).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import require_tool
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from support import clang_command, make_tree, rezolus_dir, write_sampler

from rezolus_sampler.audit import audit
from rezolus_sampler.kernel import bpf
from rezolus_sampler.spec import model

pytestmark = pytest.mark.skipif(rezolus_dir() is None, reason="no Rezolus checkout")
spec_strategies = pytest.importorskip("spec_strategies")

EXAMPLES = int(os.environ.get("REZOLUS_SAMPLER_EXAMPLES", "0"))
BATCHES = EXAMPLES or 3
BATCH_SIZE = 4
# no shrinking: one batch takes ~30 s to check, and the failing batch is printed whole
DEFAULT = dict(
    deadline=None, derandomize=not EXAMPLES, print_blob=True,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
_names = itertools.count()


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is needed to list the running kernel's tracepoints")
    return make_tree(tmp_path_factory.mktemp("properties") / "rezolus")


def _layout_misses(spec: dict) -> int:
    """How many of the sampler's files the layout rules alone leave to the formatters
    (rendering runs clang-format/rustfmt where installed; this counts what the
    rules get wrong without them, for the statistics)."""
    import os

    from support import render_files

    os.environ["REZOLUS_SAMPLER_NO_FORMAT"] = "1"
    try:
        files = render_files(spec)
    finally:
        del os.environ["REZOLUS_SAMPLER_NO_FORMAT"]
    formatted = render_files(spec)
    return sum(files[name] != formatted[name] for name in ("mod.bpf.c", "mod.rs", "stats.rs"))


def _check_c(tree: Path, directory: Path) -> list[str]:
    """Problems of one rendered sampler's C: compile (both arches), format, verifier."""
    problems = []
    objects = {}
    for arch in ("x86_64", "aarch64"):
        out = directory / f"{arch}.o"
        proc = subprocess.run(clang_command(tree, directory / "mod.bpf.c", out, arch),
                              capture_output=True, text=True)
        if proc.returncode:
            problems.append(f"clang {arch}:\n{proc.stderr[-3000:]}")
        objects[arch] = out
    fmt = subprocess.run(["clang-format", f"--style=file:{tree / '.clang-format'}",
                          str(directory / "mod.bpf.c")], capture_output=True, text=True)
    if fmt.stdout != (directory / "mod.bpf.c").read_text():
        import difflib

        diff = difflib.unified_diff((directory / "mod.bpf.c").read_text().splitlines(),
                                    fmt.stdout.splitlines(), "rendered", "clang-format", lineterm="")
        problems.append("clang-format would change mod.bpf.c:\n" + "\n".join(list(diff)[:40]))
    for name in ("mod.rs", "stats.rs"):
        rs = subprocess.run(["rustfmt", "--edition", "2021", "--check", str(directory / name)],
                            capture_output=True, text=True)
        if rs.returncode:
            problems.append(f"rustfmt {name}:\n{rs.stdout[-2000:]}")
    if problems:
        return problems
    ok, _ = bpf.bpf_available()
    if ok:
        with bpf.BpfObject.open(objects["x86_64"]) as probe:
            names = probe.program_names()
        variants = [[n for n in names if n.endswith(v)] for v in ("_btf", "_raw")]
        for keep in [v for v in variants if v] or [names]:
            with bpf.BpfObject.open(objects["x86_64"]) as obj:
                for name in names:
                    obj.set_autoload(name, name in keep)
                try:
                    obj.load()
                except bpf.BpfError as err:
                    problems.append(f"verifier ({', '.join(keep)}):\n{str(err)[-3000:]}")
    for out in objects.values():
        out.unlink(missing_ok=True)
    return problems


ANCHORS = ("default", "matrix_tp_btf_per_cpu", "blockio_request_sizes")


def _typecheck(tree: Path, dirs: list[Path], work: Path) -> str:
    """rustc over the batch's mod.rs/stats.rs with the shim (tests/test_rust_typecheck.py).

    Three known samplers join every batch (totals, per-CPU, histograms) so
    that every shim API is used: the shim builds with -D warnings, and a batch
    that happens not to use an API would otherwise fail on dead code."""
    import test_rust_typecheck as rt
    from support import CASES

    samplers = []
    anchors = [write_sampler(tree, CASES[case]) for case in ANCHORS]
    for d in dirs + anchors:
        group, name = d.parent.parent.name, d.name
        obj = work / f"{group}_{name}.o"
        subprocess.run(clang_command(tree, d / "mod.bpf.c", obj, "x86_64"), check=True)
        samplers.append(rt.Sampler(group, name, d, rt.skeleton(f"{group}_{name}", rt.read_object(obj))))
    package = work / "pkg"
    rt.write_package(package, "typecheck-properties", samplers)
    (work / "Cargo.toml").write_text('[workspace]\nresolver = "2"\nmembers = ["pkg"]\n')
    proc = rt.cargo(work, "-p", "typecheck-properties")
    if proc.returncode:
        return rt.rendered_text(rt.errors_by_crate(proc.stdout).get("typecheck_properties", [])) or proc.stderr[-3000:]
    return ""


@st.composite
def batch(draw):
    return [draw(spec_strategies.sampler_spec(f"s{next(_names)}")) for _ in range(BATCH_SIZE)]


@settings(max_examples=BATCHES + 1, **DEFAULT)  # the first example is hypothesis' simplest
@given(specs=batch())
def test_generated_samplers_build_compile_format_typecheck_and_load(tree, tmp_path_factory, specs):
    for tool in ("clang", "clang-format", "rustfmt", "cargo", "llvm-objdump"):
        require_tool(tool)
    from hypothesis import event

    dirs = []
    for spec in specs:
        model.build(spec, tree)  # a valid spec is accepted: SpecError here is a bug
        dirs.append(write_sampler(tree, spec))
        event(f"files the layout rules alone leave to a formatter: {_layout_misses(spec)}")
    with ThreadPoolExecutor(max_workers=2) as pool:
        problems = dict(zip(dirs, pool.map(lambda d: _check_c(tree, d), dirs)))
    bad = {str(d.relative_to(tree)): p for d, p in problems.items() if p}
    assert not bad, "\n\n".join(f"{d}:\n" + "\n".join(p) for d, p in bad.items())
    error = _typecheck(tree, dirs, tmp_path_factory.mktemp("prop_rust"))
    assert not error, f"rustc rejects generated code:\n{error}"
    # the audit holds them to every principle it checks; a hook that another sampler
    # attaches (these specs share hooks with each other and with Rezolus') is the one
    # finding the generator warns about instead of refusing (P3)
    report = audit(tree, dirs)
    assert not report.notes and not report.waived, report.notes
    unexpected = [f"{f.location(tree)}: {f.check}: {f.what}" for f in report.findings if f.check != "shared-hook"]
    assert not unexpected, "\n".join(unexpected)
    for d in dirs:
        shutil.rmtree(d)


@settings(max_examples=(EXAMPLES or 3) * 20, **DEFAULT)
@given(data=st.data())
def test_hostile_mutations_give_one_message_naming_the_field(data):
    spec = data.draw(spec_strategies.sampler_spec(f"m{next(_names)}"))
    bad, path, value = data.draw(spec_strategies.mutated(spec))
    try:
        model.build(bad)
    except model.SpecError as err:
        message = str(err)
        assert message and "\n" not in message and "Traceback" not in message, message
        assert err.field, f"no field named for {path}={value!r}: {message}"
    # anything else propagates and fails the test: a traceback would reach a user
