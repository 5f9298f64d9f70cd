"""The formatters' line rules (rezolus_sampler/emit/lines.py) against the real
formatters, on random shapes: what `lines.py` lays out, clang-format (Rezolus'
.clang-format) and rustfmt leave unchanged."""

from __future__ import annotations

import random
import subprocess

import pytest
from conftest import require_tool
from support import rezolus_dir

from rezolus_sampler.emit import lines

pytestmark = pytest.mark.skipif(rezolus_dir() is None, reason="no Rezolus checkout")


def _ident(rng: random.Random, lo: int, hi: int, prefix: str = "") -> str:
    return prefix + "".join(rng.choice("abcdefghij_") for _ in range(rng.randint(lo, hi))) + "x"


def _clang_format(text: str) -> str:
    style = f"--style=file:{rezolus_dir() / '.clang-format'}"
    return subprocess.run(["clang-format", style], input=text, capture_output=True, text=True,
                          check=True).stdout


def test_c_layouts_are_clang_format_fixed_points():
    require_tool("clang-format")
    rng = random.Random(7)
    chunks = []
    for i in range(300):
        params = [f"struct {_ident(rng, 2, 28)}* {_ident(rng, 0, 28)}{j}" for j in range(rng.randint(1, 5))]
        head = rng.choice(["static __always_inline int ", "int "])
        name = _ident(rng, 8, 60, "h") + str(i)
        body = lines.c_call(rng.choice(["    return ", "    "]), _ident(rng, 8, 50, "f"),
                            [_ident(rng, 1, 40) for _ in range(rng.randint(1, 6))])
        assign = lines.assign_call(f"    u64* {_ident(rng, 4, 40)}", "bpf_map_lookup_elem",
                                   [f"&{_ident(rng, 4, 40)}", f"&{_ident(rng, 1, 30)}"], "    ")
        chunks.append(f"{lines.c_function(head, name, params)}\n{assign}\n{body}\n}}\n")
    source = "\n".join(chunks)
    assert _clang_format(source) == source


def test_rust_layouts_are_rustfmt_fixed_points(tmp_path):
    require_tool("rustfmt")
    rng = random.Random(11)
    body = []
    for i in range(120):
        name = _ident(rng, 4, 70)
        body.append("        debug!(\n            \"{NAME} x() BPF instruction count: {}\",\n"
                    + lines.rust_chain("self.progs", [name, "insn_cnt()"], "            ") + "\n        );")
        items = [(f"&{_ident(rng, 2, 50).upper()}", rng.choice([None, f"family: slot {i}"]))
                 for _ in range(rng.randint(1, 6))]
        items[0] = (items[0][0], f"family: slots {i}..{i + 5}")  # a family starts every vector
        body.append(f"        let v{i} = vec![\n" + lines.rust_commented_items(items, "            ")
                    + "\n        ];")
    source = "impl X {\n    fn f(&self) {\n" + "\n".join(body) + "\n    }\n}\n"
    path = tmp_path / "f.rs"
    path.write_text(source)
    proc = subprocess.run(["rustfmt", "--edition", "2021", "--check", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
