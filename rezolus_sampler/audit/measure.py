"""`rezolus-sampler audit --measure`: principle P14 for a whole tree in one command.

Every sampler is compiled with Rezolus' flags, its programs chosen as its
mod.rs chooses them (tp_btf/raw_tp twins by kernel BTF, the per-arch
`enabled_programs` allowlist), loaded and attached all at once, as the agent
runs them. One mixed workload (the proof command's syscalls, loopback UDP,
fork/exec and O_DIRECT block writes) drives the common hooks while the
kernel's `bpf_stats` count; each program's ns per event is its
Δrun_time_ns / Δrun_cnt, next to the instructions the verifier processed.

A sampler the kernel refuses (a verifier error, EPERM for fentry) is listed
with the reason; a program that does not attach (no kprobes in this kernel, a
missing symbol) is listed with libbpf's reason, and the sampler's other
programs are still measured, as Rezolus tolerates attach failures. Nothing is
pinned: every link belongs to a `BpfObject` of this process and is destroyed
when the measurement ends, also on error or SIGINT/SIGTERM (see
`rezolus_sampler.kernel.bpf`).
"""

from __future__ import annotations

import os
import platform
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rezolus_sampler.audit.source import Sampler
from rezolus_sampler.kernel import bpf, prove

# (workload, count, size): a few hundred milliseconds of each common hook family
MIXED = (("syscalls", 100_000, 0), ("udp", 5_000, 512), ("fork", 100, 0), ("block", 256, 4096))


def _reason(error: Exception) -> str:
    """The first line of a libbpf/clang error and the log line that says why."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    if not lines:
        return type(error).__name__
    detail = [
        ln
        for ln in lines[1:]
        if "error" in ln.lower()
        or "failed" in ln.lower()
        or "invalid" in ln.lower()
        or "denied" in ln.lower()
    ]
    head = lines[0]
    return head if not detail else f"{head} ({detail[-1][:200]})"


def _compile(s: Sampler, root: Path, out: Path, arch: str) -> str | None:
    try:
        bpf.compile_bpf(s.c.path, out, root, arch)
        return None
    except bpf.BpfError as e:
        return _reason(e)


def measure(root: Path, samplers: list[Sampler]) -> dict[str, Any]:
    """Load, attach and measure `samplers`; the report `format_text` prints."""
    arch = prove.host_arch()
    btf = prove.BTF_PATH.exists()
    report: dict[str, Any] = {
        "kernel": platform.release(),
        "arch": arch,
        "btf": btf,
        "cannot": None,
        "stats": None,
        "workload": [],
        "samplers": [],
        "notes": [],
    }
    if os.geteuid() != 0:
        report["cannot"] = (
            "not running as root (loading and attaching BPF needs CAP_BPF + CAP_PERFMON)"
        )
        return report
    ok, why = bpf.bpf_available(require_btf=False)
    if not ok:
        report["cannot"] = why
        return report
    with tempfile.TemporaryDirectory(prefix="audit-measure-") as tmp, ExitStack() as stack:
        objects = [Path(tmp) / f"{i}_{s.name}.bpf.o" for i, s in enumerate(samplers)]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            errors = list(
                pool.map(
                    lambda i: _compile(samplers[i], root, objects[i], arch), range(len(samplers))
                )
            )
        stack.enter_context(bpf.cleanup_on_signals())
        try:
            bpf.ensure_fs()
        except bpf.BpfError as e:
            report["cannot"] = str(e)
            return report
        attached: list[tuple[dict, bpf.BpfObject, dict]] = []
        for s, error, obj_path in zip(samplers, errors, objects):
            entry: dict[str, Any] = {
                "sampler": s.name,
                "dir": str(s.dir.relative_to(root)),
                "status": "measured",
                "reason": None,
                "programs": [],
            }
            report["samplers"].append(entry)
            if error:
                entry.update(status="compile error", reason=error)
                continue
            obj = stack.enter_context(bpf.BpfObject.open(obj_path))
            wanted = [p for p in s.loaded(btf, arch) if p.name in obj.program_names()]
            for name in obj.program_names():
                if name not in {p.name for p in wanted}:
                    obj.set_autoload(name, False)
            try:
                obj.load()
            except bpf.BpfError as e:
                entry.update(status="refused", reason=_reason(e))
                obj.close()
                continue
            for prog in wanted:
                row = {"name": prog.name, "section": prog.section, "attached": True, "reason": None}
                try:
                    obj.attach(prog.name)
                except bpf.BpfError as e:
                    row.update(attached=False, reason=_reason(e))
                entry["programs"].append(row)
            attached.append(
                (entry, obj, {r["name"]: r for r in entry["programs"] if r["attached"]})
            )
        workloads = []
        for name, count, size in MIXED:
            try:
                run = stack.enter_context(prove.WORKLOADS[name][0](count, size))
            except prove.CannotProve as e:
                report["notes"].append(f"workload {name} skipped: {e}")
                continue
            workloads.append((name, run))
        report["stats"] = stack.enter_context(bpf.bpf_stats_enabled())
        before = {(id(obj), n): obj.prog_info(n) for _, obj, rows in attached for n in rows}
        for name, run in workloads:
            start = time.monotonic()
            description = run()
            report["workload"].append(
                {
                    "name": name,
                    "description": description,
                    "seconds": round(time.monotonic() - start, 3),
                }
            )
        for entry, obj, rows in attached:
            for name, row in rows.items():
                x, y = before[(id(obj), name)], obj.prog_info(name)
                runs, ns = y.run_cnt - x.run_cnt, y.run_time_ns - x.run_time_ns
                row.update(
                    id=y.id,
                    verified_insns=y.verified_insns,
                    xlated_insns=y.xlated_insns,
                    runs=runs,
                    ns_per_event=round(ns / runs, 1) if runs else None,
                )
    return report


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))
        ).rstrip()
        for row in rows
    ]


def _short(program: dict[str, Any]) -> str:
    """An attach failure without the names that differ between programs, so equal causes group."""
    reason = program["reason"] or ""
    detail = re.search(r"\((libbpf: .*)\)$", reason)
    reason = detail.group(1) if detail else reason
    reason = re.sub(r"prog '[^']*': ", "", reason)
    symbol = (program["section"] or "").split("/")[-1]
    return (
        reason.replace(f"'{symbol}+0x0'", "").replace(f"'{program['name']}'", "").replace("  ", " ")
    )


def format_text(report: dict[str, Any]) -> str:
    if report["cannot"]:
        return f"measure: cannot measure here: {report['cannot']}"
    out = [
        f"measure (P14): Linux {report['kernel']} {report['arch']}, kernel BTF "
        f"{'yes' if report['btf'] else 'no'}, programs chosen as each mod.rs chooses them, all "
        "samplers attached at once",
        "workload: "
        + "; ".join(f"{w['description']} ({w['seconds']:.2f} s)" for w in report["workload"]),
        "",
    ]
    rows = [["sampler", "program", "section", "verified insns", "runs", "ns/event"]]
    refused, unattached = [], []
    for entry in report["samplers"]:
        if entry["status"] != "measured":
            refused.append(f"  {entry['sampler']}: {entry['status']}: {entry['reason']}")
            continue
        for p in entry["programs"]:
            if not p["attached"]:
                unattached.append((entry["sampler"], p))
                continue
            ns = p["ns_per_event"]
            rows.append(
                [
                    entry["sampler"],
                    p["name"],
                    p["section"],
                    str(p["verified_insns"]),
                    str(p["runs"]),
                    "-" if ns is None else f"{ns:.1f}",
                ]
            )
    if len(rows) > 1:
        out += _table(rows, {3, 4, 5})
    if unattached:
        out += [
            "",
            "not attached here (Rezolus tolerates attach failures; the other programs were "
            "measured):",
        ]
        by_reason: dict[tuple[str, str], list[str]] = {}
        for sampler, p in unattached:
            by_reason.setdefault((sampler, _short(p)), []).append(p["section"])
        out += [
            f"  {sampler}: {', '.join(sections)}: {reason}"
            for (sampler, reason), sections in by_reason.items()
        ]
    if refused:
        out += ["", "refused (nothing of these samplers loads here):"] + refused
    out += [f"note: {n}" for n in report["notes"]]
    out.append(
        "ns/event: kernel bpf_stats Δrun_time_ns / Δrun_cnt per program in this run ('-': no "
        "event); compare within one run only"
    )
    return "\n".join(out)
