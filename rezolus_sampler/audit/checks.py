"""The machine-checkable principles, one function per concern.

Each `check_*` takes the sampler and the tree it sits in and yields `Finding`s.
A finding names its principle, points at a file and line, says what is wrong
and how to fix it; `why` is filled from principles.md (`report.why`), so the
reason is the methodology's own sentence, not a copy of it. `spans` are the
code constructs a waiver comment may sit on (see `waiver_for`).
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
import re
from collections.abc import Iterator
from pathlib import Path

from rezolus_sampler.audit.source import (
    REGISTERING,
    CFunc,
    CSource,
    Sampler,
    StatsRs,
    Text,
    build_rs_descriptions,
    eval_int,
    hook_of,
    lex,
    match_close,
    read_text,
    split_top,
)

ARCHES = ("x86_64", "aarch64")
SCALAR_TYPES = {
    "LazyCounter",
    "LazyGauge",
    "Counter",
    "Gauge",
    "RwLockHistogram",
    "AtomicHistogram",
    "Histogram",
}
PACKED = ("packed_counters", "sparse_packed_counters")


# Why each finding matters, as (principle, a phrase of the principles.md sentence that says it):
# the report prints that sentence, so the reason is the methodology's own words.
WHY_PROGRAM_PER_HOOK = ("P3", "Each attached program pays dispatch")
WHY_HASH = ("P2", "A hash lookup is different")
WHY_PERCPU = ("P7", "cannot be mmapped")
WHY_MMAP = ("P7", "Looking slots up through syscalls")
WHY_WIDTH_SMALLER = ("P7", "the reader crashes")
WHY_WIDTH_LARGER = ("P7", "silently wrong")
WHY_MACRO = ("P4", "a macro hides them from that scan")
WHY_RUNTIME = ("P4", "Statics are resolved when the program is compiled")
WHY_THREE_VIEWS = ("P4", "three views of one fact")
WHY_PROCFS = ("P1", "Every procfs or sysfs read costs")
WHY_REFRESH = ("P12", "A refresh runs on every scrape")
WHY_LOOP = ("P6", "soon becomes most of the cost")
WHY_LOCK = ("P6", "a lock serialises")
WHY_OUTPUT = ("P6", "A per-event record means")
WHY_POWER = ("P9", "so the two powers must match")
WHY_POWER3 = ("P9", "any percentile is within a known relative error")
WHY_GROUP = ("P12", "An acquisition group records when")
WHY_ONE_GROUP = ("P12", "One group per map, with one writer")
WHY_TWIN_PICK = ("P5", "picks which one loads")
WHY_TWIN_LOAD = ("P5", "a failed load fails the whole skeleton")
WHY_DOC_HOOK = ("P17", "A doc that names a hook the code does not attach")
WHY_DOC_METRIC = ("P17", "A doc that names a metric")
WHY_DOC_DRIFT = ("P17", "nothing compiles it")


@dataclasses.dataclass
class Finding:
    principle: str  # P<n> in principles.md
    check: str  # stable id of the check, for filtering (e.g. "shared-hook")
    sampler: str
    file: Path  # absolute
    line: int
    what: str
    fix: str
    why_phrase: str = ""  # picks the sentence of principles.md that says why
    spans: list[tuple[Path, int, int]] = dataclasses.field(default_factory=list)
    why: str = ""  # filled by the report from principles.md
    waiver: str | None = None  # the reason of the comment that waives it
    waiver_line: int | None = None

    def location(self, root: Path) -> str:
        try:
            rel = self.file.relative_to(root)
        except ValueError:
            rel = self.file
        return f"{rel}:{self.line}"


@dataclasses.dataclass
class TreeFacts:
    """What the checks need from the rest of the tree."""

    root: Path
    hooks: dict[tuple[str, str], dict[str, list[str]]]  # hook -> sampler -> sections
    descriptions: dict[str, tuple[str, Path, int]]  # build.rs' winner per metric name
    consts: dict[str, str]  # Rust integer constants (MAX_CPUS, HISTOGRAM_GROUPING_POWER, ...)
    notes: list[str] = dataclasses.field(default_factory=list)  # what a check could not evaluate

    @property
    def max_cpus(self) -> int:
        return eval_int("MAX_CPUS", self.consts) or 1024


def finding(
    why: tuple[str, str],
    check: str,
    s: Sampler,
    file: Path,
    line: int,
    what: str,
    fix: str,
    spans: list[tuple[Path, int, int]] | None = None,
) -> Finding:
    """A finding of principle `why[0]`; its reason: the principles.md sentence holding `why[1]`."""
    return Finding(
        why[0],
        check,
        s.name,
        file,
        line,
        what,
        fix,
        why[1],
        spans if spans is not None else [(file, line, line)],
    )


def _lines(names) -> str:
    return ", ".join(f"`{n}`" for n in names)


def possible_hooks(s: Sampler) -> dict[tuple[str, str], list[CFunc]]:
    """Hooks of the programs that load in some configuration (BTF or not, either arch)."""
    hooks: dict[tuple[str, str], list[CFunc]] = {}
    for btf in (True, False):
        for arch in ARCHES:
            for prog in s.loaded(btf, arch):
                progs = hooks.setdefault(hook_of(prog.section or ""), [])
                if prog not in progs:
                    progs.append(prog)
    return hooks


# --------------------------------------------------------------------------
# P3: one program per hook
# --------------------------------------------------------------------------


def check_shared_hooks(s: Sampler, tree: TreeFacts) -> Iterator[Finding]:
    """P3: a hook another sampler attaches, or two programs of this sampler loaded on one hook."""
    for hook, progs in possible_hooks(s).items():
        others = {name: secs for name, secs in tree.hooks.get(hook, {}).items() if name != s.name}
        if others:
            where = "; ".join(
                f"{name} ({', '.join(secs)})" for name, secs in sorted(others.items())
            )
            first = progs[0]
            yield finding(
                WHY_PROGRAM_PER_HOOK,
                "shared-hook",
                s,
                s.c.path,
                first.line,
                f"`{hook[1]}` is also attached by {where}: each event runs {len(others) + 1} "
                "programs",
                f"add these counters to the program that already holds `{hook[1]}` (one program "
                "per hook), or, if the samplers serve different users, name each other in both "
                "module docs and record the measured cost of the extra program in `// P3 "
                "exception: <reason and cost>` above this program",
                [(s.c.path, p.line, p.end_line) for p in progs],
            )
    seen = set()
    for btf in (True, False):
        for arch in ARCHES:
            by_hook: dict[tuple[str, str], list[CFunc]] = {}
            for prog in s.loaded(btf, arch):
                by_hook.setdefault(hook_of(prog.section or ""), []).append(prog)
            for hook, progs in by_hook.items():
                names = tuple(p.name for p in progs)
                if len(progs) > 1 and names not in seen:
                    seen.add(names)
                    yield finding(
                        WHY_PROGRAM_PER_HOOK,
                        "hook-twice",
                        s,
                        s.c.path,
                        progs[1].line,
                        f"{_lines(names)} all load together on `{hook[1]}` (kernel BTF "
                        f"{'present' if btf else 'absent'}, {arch})",
                        "update every counter of this hook in one program; if they are "
                        "tp_btf/raw_tp twins, list the unused twin in `.disabled_programs(if "
                        "kernel_has_btf() { .. } else { .. })`",
                        [(s.c.path, p.line, p.end_line) for p in progs],
                    )


# --------------------------------------------------------------------------
# P2, P7: map types and flags
# --------------------------------------------------------------------------


def map_users(s: Sampler) -> dict[str, list[str]]:
    """Map name -> programs whose code (with what they call) references it."""
    users: dict[str, list[str]] = {}
    for prog in s.c.programs:
        text = " ".join(f.body for f in s.c.reachable(prog))
        for name in s.c.maps:
            if re.search(rf"&\s*{re.escape(name)}\b", text):
                users.setdefault(name, []).append(prog.name)
    return users


def check_maps(s: Sampler, tree: TreeFacts) -> Iterator[Finding]:
    """P2: hash and LRU maps; P7: maps Rezolus mmaps must be mmapable arrays."""
    users = map_users(s)
    registered = {r.map: r for r in s.mod.registrations if r.kind in REGISTERING}
    for cmap in s.c.maps.values():
        kind = cmap.type.replace("BPF_MAP_TYPE_", "")
        span = [(s.c.path, cmap.line, cmap.end_line)]
        if "HASH" in kind:
            used = users.get(cmap.name)
            yield finding(
                WHY_HASH,
                "hash-map",
                s,
                s.c.path,
                cmap.type_line,
                f"`{cmap.name}` is a BPF_MAP_TYPE_{kind} map"
                + (f", updated or looked up on every event of {_lines(used)}" if used else ""),
                "index a BPF_MAP_TYPE_ARRAY by a bounded integer instead (a label value, a CPU, a "
                "pid below MAX_PID); if the keys are genuinely sparse (a pointer) and only the "
                "kernel reads the map, say so above the declaration: `// P2 exception: <key>, at "
                f"most max_entries = {cmap.max_entries or '?'} entries, an array cannot work "
                "because <why>`",
                span,
            )
        reg = registered.get(cmap.name)
        if reg is None:
            continue
        if kind == "PERCPU_ARRAY":
            yield finding(
                WHY_PERCPU,
                "percpu-array",
                s,
                s.c.path,
                cmap.type_line,
                f"`{cmap.name}` is a BPF_MAP_TYPE_PERCPU_ARRAY that mod.rs reads through mmap "
                f"(`.{reg.kind}` at mod.rs:{reg.line})",
                "declare it BPF_MAP_TYPE_ARRAY with BPF_F_MMAPABLE and one cacheline-padded bank "
                "per CPU, indexed W * cpu + slot",
                span,
            )
        elif kind != "ARRAY":
            yield finding(
                WHY_MMAP,
                "mmap-flag",
                s,
                s.c.path,
                cmap.type_line,
                f"`{cmap.name}` is a BPF_MAP_TYPE_{kind} map, but mod.rs reads it through mmap "
                f"(`.{reg.kind}` at mod.rs:{reg.line}): only arrays can be mmapped",
                "declare it BPF_MAP_TYPE_ARRAY with BPF_F_MMAPABLE",
                span,
            )
        elif "BPF_F_MMAPABLE" not in cmap.flags and not (s.c.eval(cmap.flags or "0") or 0) & 1024:
            yield finding(
                WHY_MMAP,
                "mmap-flag",
                s,
                s.c.path,
                cmap.type_line,
                f"`{cmap.name}` ({cmap.type or 'no type'}) lacks BPF_F_MMAPABLE, but mod.rs reads "
                f"it through mmap (`.{reg.kind}` at mod.rs:{reg.line}): the mmap fails and the "
                "sampler thread panics",
                "add `__uint(map_flags, BPF_F_MMAPABLE);` (an ARRAY map; hash maps cannot be "
                "mmapped)",
                span,
            )
    for name, reg in registered.items():
        if name not in s.c.maps:
            yield finding(
                WHY_MMAP,
                "map-missing",
                s,
                s.mod.path,
                reg.line,
                f'`.{reg.kind}("{name}", ..)` names a map mod.bpf.c does not declare',
                f"declare `{name}` in mod.bpf.c or register the map's real name",
            )


# --------------------------------------------------------------------------
# P7: bank width against the registered vector, packed sizes
# --------------------------------------------------------------------------


def _width_names(s: Sampler, expr: str) -> str:
    names = [
        n for n in re.findall(r"\b[A-Z_][A-Z0-9_]*\b", expr) if n != "MAX_CPUS" and n in s.c.defines
    ]
    return ", ".join(f"{n} = {s.c.eval(n)}" for n in names)


def check_bank_widths(s: Sampler, tree: TreeFacts) -> Iterator[Finding]:
    """P7: W = roundup(n, 8) for every counters map, n = the registered vector's length."""
    cpus = tree.max_cpus
    for reg in s.mod.registrations:
        cmap = s.c.maps.get(reg.map)
        if cmap is None or "ARRAY" not in cmap.type or cmap.type.endswith("PERCPU_ARRAY"):
            continue
        entries, per = s.c.eval(cmap.max_entries), s.c.value_u64s(cmap)
        if entries is None or per is None:
            tree.notes.append(
                f"{s.name}: cannot evaluate map `{cmap.name}` (max_entries `{cmap.max_entries}`, "
                f"value `{cmap.value}`), so its size against `.{reg.kind}` was not checked"
            )
            continue
        total = entries * per
        span = [(s.c.path, cmap.line, cmap.end_line)]
        if reg.kind in ("counters", "cpu_counters"):
            n = len(reg.statics)
            want = -(-n // 8) * 8
            if total == cpus * want:
                continue
            have = total / cpus
            named = _width_names(s, cmap.max_entries) or _width_names(
                s, s.c.all_structs().get(cmap.value.split()[-1], "")
            )
            vector = f"`{reg.vector}`" if reg.vector else "its vector"
            yield finding(
                WHY_WIDTH_SMALLER if have < want else WHY_WIDTH_LARGER,
                "bank-width",
                s,
                s.c.path,
                cmap.max_entries_line if per == 1 else cmap.value_line,
                f"`{cmap.name}` holds {total} u64 = MAX_CPUS ({cpus}) × {have:g}"
                + (f" ({named})" if named else "")
                + f", but mod.rs registers {n} statics in {vector} (mod.rs:{reg.line}), so "
                + "Rezolus' "
                f"reader uses W = roundup({n}, 8) = {want} and mmaps {cpus * want} u64",
                f"make the bank width {want} (a macro defined as roundup(n, 8) next to the slot "
                "list), or register exactly the statics the slots hold, in slot order",
                span,
            )
        elif reg.kind in PACKED and reg.statics:
            metric = s.stats.metrics.get(reg.statics[0][0])
            m = re.search(r"::new\((.*)\)", metric.ctor) if metric else None
            entries_rust = eval_int(m.group(1), {**tree.consts, **s.stats.consts}) if m else None
            if entries_rust is not None and entries_rust != total:
                yield finding(
                    WHY_WIDTH_SMALLER,
                    "packed-size",
                    s,
                    s.c.path,
                    cmap.max_entries_line,
                    f"`{cmap.name}` holds {total} u64 but `{metric.static}` is `{metric.ctor}` "
                    f"({entries_rust} entries): PackedCounters panics when the lengths differ",
                    "give the map and the CounterGroup the same number of entries (the same "
                    "constant)",
                    span,
                )


# --------------------------------------------------------------------------
# P4: explicit statics, descriptions build.rs can read
# --------------------------------------------------------------------------

_RUNTIME_METRICS = re.compile(r"\b(MetricBuilder|DynBoxedMetric|DynPinnedMetric|dynmetrics)\b")


def _item_macros(text: Text) -> Iterator[tuple[int, str]]:
    """Macro invocations at module level (brace depth 0)."""
    code, depth = text.code, 0
    for m in re.finditer(r"[{}]|^[ \t]*((?:\w+::)*\w+)![ \t]*[\(\[\{]", code, re.M):
        if m.group(0) == "{":
            depth += 1
        elif m.group(0) == "}":
            depth -= 1
        elif depth == 0:
            yield text.line(m.start(1)), m.group(1)
            if m.group(0).endswith("{"):
                depth += 1


def check_metric_declarations(s: Sampler, tree: TreeFacts) -> Iterator[Finding]:
    """P4: every series an explicit `#[metric] pub static`; none from macros or at run time."""
    for text in (s.mod, s.stats):
        for m in re.finditer(r"\bmacro_rules!\s*(\w+)", text.code):
            yield finding(
                WHY_MACRO,
                "metric-macro",
                s,
                text.path,
                text.line(m.start()),
                f"`macro_rules! {m.group(1)}` in {text.path.name}: statics a macro expands are "
                "invisible to grep, review and build.rs' description scan",
                "write each `#[metric(...)] pub static` out in stats.rs (the template generates "
                "them)",
            )
        for m in _RUNTIME_METRICS.finditer(text.code):
            yield finding(
                WHY_RUNTIME,
                "metric-runtime",
                s,
                text.path,
                text.line(m.start()),
                f"`{m.group(1)}` registers metrics at run time",
                "declare one `#[metric(...)] pub static` per label combination in stats.rs",
            )
    for line, name in _item_macros(s.stats):
        yield finding(
            WHY_MACRO,
            "metric-macro",
            s,
            s.stats.path,
            line,
            f"`{name}!` at module level in stats.rs: statics it expands are invisible to grep, "
            "review and build.rs' description scan",
            "write each `#[metric(...)] pub static` out",
        )
    for line in s.stats.orphan_attributes:
        yield finding(
            WHY_MACRO,
            "metric-macro",
            s,
            s.stats.path,
            line,
            "a `#[metric(` attribute that is not on a `pub static` (inside a macro or a function)",
            "put every `#[metric(...)]` directly on its `pub static` in stats.rs",
        )
    declared = s.stats.metrics
    for reg in s.mod.registrations:
        for static, line in reg.statics:
            if static not in declared:
                yield finding(
                    WHY_THREE_VIEWS,
                    "metric-undeclared",
                    s,
                    s.mod.path,
                    line,
                    f'`.{reg.kind}("{reg.map}", ..)` reads into `{static}`, which stats.rs does '
                    f"not declare as a `#[metric(...)] pub static`",
                    f"declare `{static}` in stats.rs with `#[metric(name = .., description = .., "
                    f"metadata = {{ .. }})]`",
                )


def _why_unread(stats: StatsRs, offset: int) -> str:
    raw = stats.text
    close = raw.find(")]", offset)
    real_end = match_close(stats.code, offset + len("#[metric"))
    block = raw[offset : close + 2] if close >= 0 else raw[offset:]
    if 0 <= close < real_end:
        return "the attribute contains `)]` before its end, and build.rs stops reading there"
    if 'name = "' not in block:
        return 'build.rs looks for the literal `name = "` (one space each side of `=`)'
    return 'build.rs looks for the literal `description = "` (one space each side of `=`)'


def check_descriptions(s: Sampler, tree: TreeFacts) -> Iterator[Finding]:
    """P4: what build.rs' metric-description scan reads, and one description per family."""
    read = {offset: (name, desc) for offset, name, desc in build_rs_descriptions(s.stats.text)}
    for metric in sorted(s.stats.metrics.values(), key=lambda m: m.line):
        span = [(s.stats.path, metric.line, metric.end_line)]
        if metric.name is None or metric.description is None:
            missing = "name" if metric.name is None else "description"
            yield finding(
                WHY_MACRO,
                "description-parser",
                s,
                s.stats.path,
                metric.line,
                f'`#[metric]` on `{metric.static}` has no `{missing} = "..."`',
                f'give it a `{missing} = "..."` literal',
                span,
            )
            continue
        got = read.get(metric.offset)
        if got != (metric.name, metric.description):
            if got is None:
                what = (
                    f"build.rs reads no description for `{metric.name}` from `{metric.static}`: "
                    + _why_unread(s.stats, metric.offset)
                )
            else:
                what = (
                    f'build.rs reads the description of `{metric.name}` as "{got[1]}" '
                    f'(`{metric.static}`): it ends at the first `"`'
                )
            yield finding(
                WHY_MACRO,
                "description-parser",
                s,
                s.stats.path,
                metric.line,
                what,
                'write `name = "..."` and `description = "..."` with one space each side of `=`, '
                'and no `"` or `)]` inside the description',
                span,
            )
            continue
        winner = tree.descriptions.get(metric.name)
        if (
            winner
            and winner[0] != metric.description
            and (winner[1], winner[2]) != (s.stats.path, metric.line)
        ):
            where = f"{_rel(tree.root, winner[1])}:{winner[2]}"
            yield finding(
                WHY_MACRO,
                "description-differs",
                s,
                s.stats.path,
                metric.line,
                f'`{metric.static}` describes `{metric.name}` as "{metric.description}", but '
                f'build.rs keeps the family\'s first description, "{winner[0]}" ({where}); this '
                f"one is never shown",
                f"give every static of `{metric.name}` the same description and let the labels "
                "tell the series apart",
                span,
            )


def _rel(root: Path, path: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def tree_descriptions(root: Path) -> dict[str, tuple[str, Path, int]]:
    """build.rs' table: metric name -> first description (walk sorted, first wins)."""
    found: dict[str, tuple[str, Path, int]] = {}
    base = Path(root) / "src" / "agent" / "samplers"
    for stats in sorted(base.rglob("stats.rs"), key=lambda p: p.parts):
        text = read_text(stats)
        starts = [0] + [m.end() for m in re.finditer("\n", text)]
        for offset, name, desc in build_rs_descriptions(text):
            found.setdefault(name, (desc, stats, bisect.bisect_right(starts, offset)))
    return found


# --------------------------------------------------------------------------
# P1, P12: nothing slow on the refresh path
# --------------------------------------------------------------------------

_PROCFS = re.compile(r'"/(?:proc|sys)/[^"]*"')
_BLOCKING = re.compile(
    r"\b(std::fs::\w+|fs::(?:read\w*|File|OpenOptions|metadata)|File::open|OpenOptions::new|"
    r"read_to_string|read_dir|Command::new|thread::sleep)\b"
)


def refresh_fns(s: Sampler) -> list:
    """mod.rs functions run on every refresh: ringbuf handlers, Sampler impls, what they call."""
    fns = s.mod.fns
    roots = {r.handler for r in s.mod.registrations if r.handler}
    todo = [
        f
        for key, f in fns.items()
        if f.name in roots
        and not f.impl
        or "Sampler for" in f.impl
        or f.name in ("refresh", "sample")
    ]
    seen = {id(f) for f in todo}
    found = []
    while todo:
        f = todo.pop()
        found.append(f)
        for callee in re.findall(r"\b(\w+)\s*\(", f.body):
            g = fns.get(callee)
            if g is not None and id(g) not in seen:
                seen.add(id(g))
                todo.append(g)
    return found


def check_refresh_io(s: Sampler, tree: TreeFacts) -> Iterator[Finding]:
    """P1/P12: procfs/sysfs reads or blocking I/O in code that runs on every refresh."""
    for fn in refresh_fns(s):
        span = [(s.mod.path, fn.line, fn.end_line)]
        for m in _PROCFS.finditer(fn.body):
            yield finding(
                WHY_PROCFS,
                "refresh-io",
                s,
                s.mod.path,
                s.mod.line(fn.body_offset + m.start()),
                f"`{fn.name}` runs on every refresh and reads {m.group(0)}",
                "count the event in BPF at its tracepoint and read the bank through mmap; data "
                "with no BPF source is read at a throttled cadence off the sample path (P12)",
                span,
            )
        if _PROCFS.search(fn.body):
            continue
        for m in _BLOCKING.finditer(fn.body):
            yield finding(
                WHY_REFRESH,
                "refresh-io",
                s,
                s.mod.path,
                s.mod.line(fn.body_offset + m.start()),
                f"`{fn.name}` runs on every refresh and calls `{m.group(1)}` (blocking I/O)",
                "move the read off the sample path to a throttled schedule, or count in BPF",
                span,
            )


# --------------------------------------------------------------------------
# P6: bounded O(1) work per event
# --------------------------------------------------------------------------

_HOT_WORK = [
    (re.compile(r"\b(for|while)\s*\("), "hot-loop", "a `{0}` loop", WHY_LOOP),
    (re.compile(r"\bdo\s*\{"), "hot-loop", "a `do` loop", WHY_LOOP),
    (
        re.compile(r"#\s*pragma\s+(?:clang\s+)?(unroll|loop)\b"),
        "hot-loop",
        "an unrolled loop (`#pragma {0}`)",
        WHY_LOOP,
    ),
    (
        re.compile(r"\b(bpf_loop|bpf_for_each|bpf_for|bpf_repeat|bpf_for_each_map_elem)\s*\("),
        "hot-loop",
        "`{0}`",
        WHY_LOOP,
    ),
    (re.compile(r"\b(bpf_spin_lock)\s*\("), "hot-lock", "`{0}`", WHY_LOCK),
    (re.compile(r"\b(bpf_printk|bpf_trace_printk)\s*\("), "hot-print", "`{0}`", WHY_LOOP),
]
_OUTPUT = re.compile(r"\b(bpf_ringbuf_reserve|bpf_ringbuf_output|bpf_perf_event_output)\s*\(")


def _first_seen_guard(func: CFunc, offset: int) -> bool:
    """Before `offset`, `func` returns when a value looked up in a map already equals the
    entity's identity: the output after it fires once per entity (cgroup.h's serial check)."""
    before = func.body[:offset]
    for ptr in re.findall(r"\b(\w+)\s*=\s*bpf_map_lookup_elem\s*\(", before):
        if re.search(rf"\bif\s*\(\s*\*\s*{ptr}\s*==[^)]*\)\s*\{{?\s*return\b", before):
            return True
    return False


def _enclosing_conditions(func: CFunc, offset: int) -> list[str]:
    conds = []
    for m in re.finditer(r"\bif\s*\(", func.body[:offset]):
        close = match_close(func.body, m.end() - 1)
        brace = re.match(r"\s*\{", func.body[close + 1 :])
        if brace and match_close(func.body, close + 1 + brace.end() - 1) > offset:
            conds.append(func.body[m.end() : close])
    return conds


def guarded_output_funcs(c: CSource) -> set[str]:
    funcs = c.all_funcs()
    return {
        f.name
        for f in funcs.values()
        if (outs := list(_OUTPUT.finditer(f.body)))
        and all(_first_seen_guard(f, o.start()) for o in outs)
    }


def _once_per_entity(func: CFunc, offset: int, guarded: set[str]) -> bool:
    if _first_seen_guard(func, offset):
        return True
    before = func.body[:offset]
    for cond in _enclosing_conditions(func, offset):
        for callee in re.findall(r"\b(\w+)\s*\([^)]*\)\s*==\s*0", cond):
            if callee in guarded:
                return True
        for var in re.findall(r"\b(\w+)\s*==\s*0\b|!\s*(\w+)\b", cond):
            name = var[0] or var[1]
            assigned = re.findall(rf"\b{name}\s*=\s*(\w+)\s*\(", before)
            if assigned and assigned[-1] in guarded:
                return True
    return False


def check_hot_path(s: Sampler, tree: TreeFacts) -> Iterator[Finding]:
    """P6: loops, locks, printk and unguarded ring/perf buffer output in programs."""
    found: dict[tuple[int, str], tuple[dict, list[str]]] = (
        {}
    )  # (line, check) -> (finding args, programs)
    guarded = guarded_output_funcs(s.c)

    def note(line: int, check: str, programs: str, args: dict) -> None:
        entry = found.setdefault((line, check), (args, []))
        if programs not in entry[1]:
            entry[1].append(programs)

    for prog in s.c.programs:
        for func in s.c.reachable(prog):
            own = func.file == s.c.path
            where = (
                [(func.file, func.line, func.end_line)]
                if own
                else [(s.c.path, prog.line, prog.end_line)]
            )
            via = "" if own else f" (in `{func.name}`, {func.file.name}:{func.line})"
            for pattern, check, label, why in _HOT_WORK:
                for m in pattern.finditer(func.body):
                    line = s.c.line(func.body_offset + m.start()) if own else prog.line
                    note(
                        line,
                        check,
                        prog.name,
                        dict(
                            what=f"{label.format(m.group(1) if m.groups() else '')}{via} runs on "
                            "every event of",
                            fix="do a fixed amount of work per event: compute one index, guard it "
                            "with one comparison, add to a slot; move iteration to userspace",
                            why=why,
                            spans=where,
                        ),
                    )
            for m in _OUTPUT.finditer(func.body):
                if _once_per_entity(func, m.start(), guarded):
                    continue
                line = s.c.line(func.body_offset + m.start()) if own else prog.line
                note(
                    line,
                    "hot-output",
                    prog.name,
                    dict(
                        what=f"`{m.group(1)}`{via} sends a record, with no first-seen guard, on "
                        "every event of",
                        fix="guard the record so it fires once per entity (as cgroup.h's "
                        "serial-number check does), or, if the event itself is rare, write `// P6 "
                        "exception: <expected rate and bound>` at the call",
                        why=WHY_OUTPUT,
                        spans=[(s.c.path, line, line)] + where,
                    ),
                )
    for (line, check), (args, programs) in sorted(found.items()):
        sections = sorted({s.c.funcs[p].section for p in programs})
        yield finding(
            args["why"],
            check,
            s,
            s.c.path,
            line,
            f"{args['what']} {_lines(programs)} ({', '.join(sections)})",
            args["fix"],
            args["spans"],
        )


# --------------------------------------------------------------------------
# P9: histogram grouping power
# --------------------------------------------------------------------------

_HIST_INCR = re.compile(r"\bhistogram_incr\s*\(\s*&\s*(\w+)\s*,\s*([^,]+),")
_VALUE_TO_INDEX = re.compile(r"\bvalue_to_index\s*\(")


def _normalized(text: str) -> str:
    text = re.sub(r"//[^\n]*|/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"\s+", "", text)


def c_powers(c: CSource) -> list[tuple[str | None, str, int]]:
    """(map or None, grouping power expression, line) of every histogram index computation.

    The template's `histogram_index` (emit/histogram_c.py) computes exactly histogram.h's
    `value_to_index(value, 3)` (tests/test_histogram_index.py proves it at every bucket
    boundary): its verbatim text counts as an index computation at grouping power 3."""
    from rezolus_sampler.emit.histogram_c import GROUPING_POWER, index_function

    found = []
    proven = _normalized(index_function())
    if proven in _normalized(c.code):
        at = c.code.find("histogram_index")
        found.append((None, str(GROUPING_POWER), c.line(max(at, 0))))
    for m in _HIST_INCR.finditer(c.code):
        found.append((m.group(1), m.group(2).strip(), c.line(m.start())))
    for m in _VALUE_TO_INDEX.finditer(c.code):
        args = split_top(c.code[m.end() : match_close(c.code, m.end() - 1)])
        if len(args) == 2:
            found.append((None, args[1], c.line(m.start())))
    return found


def check_histograms(s: Sampler, tree: TreeFacts) -> Iterator[Finding]:
    """P9: C grouping power = Rust grouping power = 3, and bucket counts agree."""
    consts = {**tree.consts, **s.stats.consts}
    powers = [(m, expr, line, s.c.eval(expr)) for m, expr, line in c_powers(s.c)]
    done: set[tuple[int, str]] = set()
    for reg in s.mod.registrations:
        if reg.kind != "histogram" or not reg.statics or reg.map not in s.c.maps:
            continue
        cmap = s.c.maps[reg.map]
        metric = s.stats.metrics.get(reg.statics[0][0])
        ctor = re.search(r"::new\((.*)\)", metric.ctor) if metric else None
        args = split_top(ctor.group(1)) if ctor else []
        if len(args) != 2:
            continue
        power, max_power = (eval_int(a, consts) for a in args)
        if power is None or max_power is None:
            continue
        span = [(s.stats.path, metric.line, metric.end_line), (s.c.path, cmap.line, cmap.end_line)]
        entries, per = s.c.eval(cmap.max_entries), s.c.value_u64s(cmap)
        buckets = (max_power - power + 1) << power
        if entries is not None and per is not None and entries * per != buckets:
            yield finding(
                WHY_POWER,
                "histogram-buckets",
                s,
                s.c.path,
                cmap.max_entries_line,
                f"`{cmap.name}` has {entries * per} buckets, but `{metric.static}` is "
                f"`{metric.ctor}` and reads ({max_power} − {power} + 1) · 2^{power} = {buckets}",
                f"size the map HISTOGRAM_BUCKETS_POW_{power} (histogram.h) to match the Rust side",
                span,
            )
        mine = [p for p in powers if p[0] == reg.map] or [p for p in powers if p[0] is None]
        if not mine:
            yield finding(
                WHY_POWER,
                "histogram-index",
                s,
                s.c.path,
                cmap.line,
                f"`{cmap.name}` is read as histogram `{metric.static}`, but mod.bpf.c never "
                "indexes it with histogram.h (`histogram_incr` / `value_to_index`)",
                "bucket values with `histogram_incr(&map, HISTOGRAM_POWER, value)` from helpers.h",
                span,
            )
        for _, expr, line, value in mine:
            if value is not None and value != power and (line, reg.map) not in done:
                done.add((line, reg.map))
                yield finding(
                    WHY_POWER,
                    "histogram-power",
                    s,
                    s.c.path,
                    line,
                    f"`{cmap.name}` is bucketed with grouping power {expr} = {value}, but "
                    f"`{metric.static}` is `{metric.ctor}`: Rust decodes with power {power}",
                    "use one grouping power on both sides: HISTOGRAM_POWER 3 in C and "
                    "HISTOGRAM_GROUPING_POWER in Rust",
                    span + [(s.c.path, line, line)],
                )
        if power != 3 and (0, metric.static) not in done:
            done.add((0, metric.static))
            yield finding(
                WHY_POWER3,
                "histogram-power",
                s,
                s.stats.path,
                metric.end_line,
                f"`{metric.static}` uses grouping power {power}, not 3",
                "use HISTOGRAM_GROUPING_POWER (3); another power needs its reason in `// P9 "
                "exception: <range or resolution needed>` on the map and the static",
                span,
            )


# --------------------------------------------------------------------------
# P12: acquisition groups
# --------------------------------------------------------------------------


def check_acquisition_groups(s: Sampler, tree: TreeFacts) -> Iterator[Finding]:
    """P12: every read section's group declared, registered and named on its members."""
    groups = s.stats.groups
    by_name = {g.name: g for g in groups.values() if g.name}
    uses: dict[str, list] = {}
    fix_decl = (
        "declare it in stats.rs: `pub static X_ACQ: AcquisitionGroup = AcquisitionGroup::new("
        f'crate::agent::samplers::bpf_sampler_name("{s.name}"), "{s.name}_<map>");` and '
        "register it with `#[distributed_slice(crate::agent::samplers::ACQUISITION_GROUPS)]`"
    )
    reported_groups = set()
    for reg in s.mod.registrations:
        if reg.group is None:
            continue
        uses.setdefault(reg.group, []).append(reg)
        g = groups.get(reg.group)
        if g is None:
            yield finding(
                WHY_GROUP,
                "acquisition-group",
                s,
                s.mod.path,
                reg.line,
                f'`.{reg.kind}("{reg.map}", ..)` passes `&{reg.group}`, which stats.rs '
                f"does not declare as an AcquisitionGroup",
                fix_decl,
            )
            continue
        if reg.group not in reported_groups:
            reported_groups.add(reg.group)
            if g.registered is None:
                yield finding(
                    WHY_GROUP,
                    "acquisition-group",
                    s,
                    s.stats.path,
                    g.line,
                    f"`{g.static}` is declared but not registered on ACQUISITION_GROUPS, so no "
                    "metric's acq_group resolves to it",
                    fix_decl,
                )
            if g.sampler != s.name:
                yield finding(
                    WHY_GROUP,
                    "acquisition-group",
                    s,
                    s.stats.path,
                    g.line,
                    f"`{g.static}` is declared for sampler `{g.sampler}`, but this sampler is "
                    f"`{s.name}`: its members' acq_group is looked up under `{s.name}`",
                    f'pass `bpf_sampler_name("{s.name}")`',
                )
            if reg.kind in PACKED and not g.reader_stamped:
                yield finding(
                    WHY_REFRESH,
                    "acquisition-group",
                    s,
                    s.stats.path,
                    g.line,
                    f"`{g.static}` brackets packed map `{reg.map}` but is declared with "
                    "`AcquisitionGroup::new`: until the sampler runs, snapshots walk every entry "
                    "of its members",
                    "declare it with `AcquisitionGroup::new_reader_stamped`",
                )
        for static, _ in reg.statics:
            metric = s.stats.metrics.get(static)
            if metric is None:
                continue  # metric-undeclared (P4)
            acq = metric.metadata.get("acq_group")
            if acq != g.name:
                yield finding(
                    WHY_GROUP,
                    "acquisition-group",
                    s,
                    s.stats.path,
                    metric.line,
                    f'`{static}` is read by `.{reg.kind}("{reg.map}", ..)` under group '
                    f"`{g.name}`, but its metadata has "
                    + (f'acq_group = "{acq}"' if acq else "no acq_group"),
                    f'add `acq_group = "{g.name}"` to its `#[metric]` metadata',
                    [(s.stats.path, metric.line, metric.end_line)],
                )
    for group, regs in uses.items():
        kinds = {("packed" if r.kind in PACKED else r.kind) for r in regs}
        counted = [r for r in regs if r.kind in ("counters", "cpu_counters")]
        g = groups.get(group)
        line, path = (g.line, s.stats.path) if g else (regs[-1].line, s.mod.path)
        if (counted and len(regs) > 1) or len(kinds) > 1:
            yield finding(
                WHY_ONE_GROUP,
                "acquisition-group",
                s,
                path,
                line,
                f"`{group}` brackets {len(regs)} read sections ("
                + ", ".join(f'.{r.kind}("{r.map}")' for r in regs)
                + "): one group per counters map",
                "give each .counters/.cpu_counters map its own group, named <sampler>_<map>",
            )
        elif kinds <= {"histogram", "packed"}:
            families = sorted(
                {
                    s.stats.metrics[st].name
                    for r in regs
                    for st, _ in r.statics
                    if st in s.stats.metrics and s.stats.metrics[st].name
                }
            )
            if len(families) > 1:
                yield finding(
                    WHY_ONE_GROUP,
                    "acquisition-group",
                    s,
                    path,
                    line,
                    f"`{group}` brackets several metric families ({_lines(families)}): labelled "
                    "instances of one family share a group, different families do not",
                    "declare one group per family",
                )
    families: dict[str, set[str]] = {}
    for reg in s.mod.registrations:
        if reg.kind in ("histogram", *PACKED) and reg.group:
            for static, _ in reg.statics:
                metric = s.stats.metrics.get(static)
                if metric and metric.name:
                    families.setdefault(metric.name, set()).add(reg.group)
    for family, family_groups in sorted(families.items()):
        if len(family_groups) > 1:
            first = next(m for m in s.stats.metrics.values() if m.name == family)
            yield finding(
                WHY_ONE_GROUP,
                "acquisition-group",
                s,
                s.stats.path,
                first.line,
                f"family `{family}` is read under {len(family_groups)} groups "
                f"({_lines(sorted(family_groups))})",
                "read every labelled instance of a family under one group",
            )
    stamped = {g.name for g in groups.values() if g.reader_stamped}
    stamped |= {
        groups[r.group].name for r in s.mod.registrations if r.kind in PACKED and r.group in groups
    }
    for metric in s.stats.metrics.values():
        acq = metric.metadata.get("acq_group")
        if acq is None:
            continue
        g = by_name.get(acq)
        if g is None or g.registered is None or g.sampler != s.name:
            yield finding(
                WHY_GROUP,
                "acquisition-group",
                s,
                s.stats.path,
                metric.line,
                f'`{metric.static}` has acq_group = "{acq}", but no group of that name is '
                f"declared and registered for `{s.name}` in stats.rs",
                fix_decl,
                [(s.stats.path, metric.line, metric.end_line)],
            )
        elif acq in stamped and metric.type in SCALAR_TYPES:
            yield finding(
                WHY_GROUP,
                "acquisition-group",
                s,
                s.stats.path,
                metric.line,
                f"`{metric.static}` is a scalar {metric.type} on reader-stamped group `{acq}`",
                "put scalar metrics on a sampler-stamped group (AcquisitionGroup::new)",
                [(s.stats.path, metric.line, metric.end_line)],
            )


# --------------------------------------------------------------------------
# P5: twins
# --------------------------------------------------------------------------


def check_twins(s: Sampler, tree: TreeFacts) -> Iterator[Finding]:
    """P5: names in mod.rs exist; BTF-only programs are skipped without BTF and have a twin."""
    names = {p.name for p in s.c.programs}
    for name, line, method in s.mod.named_programs:
        if name not in names:
            yield finding(
                WHY_TWIN_PICK,
                "twin",
                s,
                s.mod.path,
                line,
                f"`.{method}` names `{name}`, which mod.bpf.c does not define (programs: "
                f"{_lines(sorted(names))})",
                "use the exact C function name of the program",
            )
    hooks = s.program_hooks()
    for prog in s.c.programs:
        kind = (prog.section or "").split("/")[0]
        if kind not in ("tp_btf", "fentry", "fexit"):
            continue
        span = [(s.c.path, prog.line, prog.end_line)]
        if s.mod.twins is None or prog.name not in s.mod.twins[1]:
            yield finding(
                WHY_TWIN_LOAD,
                "twin",
                s,
                s.c.path,
                prog.line,
                f"`{prog.name}` ({prog.section}) needs the kernel's own BTF to load, but mod.rs "
                "loads it on kernels without BTF too",
                "list it in the `else` branch of `.disabled_programs(if kernel_has_btf() { .. } "
                "else { .. })`",
                span,
            )
        twins = [
            p
            for p in hooks.get(hook_of(prog.section or ""), [])
            if p is not prog
            and (p.section or "").split("/")[0]
            in ("raw_tp", "raw_tracepoint", "tracepoint", "kprobe", "kretprobe")
        ]
        if not twins:
            yield finding(
                WHY_TWIN_LOAD,
                "twin",
                s,
                s.c.path,
                prog.line,
                f"`{prog.name}` ({prog.section}) has no raw_tp twin: kernels without BTF lose this "
                "hook",
                "add a raw_tp program calling the same `static __always_inline` handler, reading "
                "arguments with BPF_CORE_READ",
                span,
            )


# --------------------------------------------------------------------------
# P17: the module doc says what the code does
# --------------------------------------------------------------------------


def module_doc(
    s: Sampler,
) -> tuple[list[tuple[int, str]], list[tuple[int, str]], int | None, int | None]:
    """(hooks, metrics, hooks header line, metrics header line) listed in mod.rs' `//!` doc."""
    hooks, metrics, mode = [], [], None
    hook_line = metric_line = None
    for number, text in s.mod.doc:
        t = text.strip()
        bullet = re.match(r"\*\s+`([^`]+)`", t)
        if bullet:
            if mode == "hooks":
                hooks.append((number, bullet.group(1)))
            elif mode == "metrics":
                metrics.append((number, bullet.group(1)))
        elif t.endswith(":") and not t.startswith("-"):
            low = t.lower()
            if "produce" in low:
                mode, metric_line = "metrics", number
            elif "trace" in low:
                mode, hook_line = "hooks", number
            else:
                mode = None
        elif t.startswith("#"):
            mode = None
    return hooks, metrics, hook_line, metric_line


def _hook_name(text: str) -> str:
    return re.split(r"[:/]", re.sub(r"\(.*\)", "", text).strip())[-1].strip()


def check_module_doc(s: Sampler, tree: TreeFacts) -> Iterator[Finding]:
    """P17: the `//!` lists name exactly the hooks the programs attach and the metrics declared."""
    hooks, metrics, hook_line, metric_line = module_doc(s)
    code_hooks = {hook_of(p.section or "")[1] for p in s.c.programs}
    code_metrics = {m.name for m in s.stats.metrics.values() if m.name}
    listed = set()
    fix = "list exactly the hooks the programs attach and the metric names stats.rs declares"
    for line, text in hooks:
        name = _hook_name(text)
        listed.add(name)
        if name not in code_hooks:
            yield finding(
                WHY_DOC_HOOK,
                "doc-hook",
                s,
                s.mod.path,
                line,
                f"the module doc names hook `{text}`, but no program attaches it (programs attach "
                f"{_lines(sorted(code_hooks))})",
                fix,
            )
    listed_metrics = set()
    for line, text in metrics:
        listed_metrics.add(text)
        if text not in code_metrics:
            close = difflib.get_close_matches(
                text.replace("/", "_"), sorted(code_metrics), n=1, cutoff=0.5
            )
            yield finding(
                WHY_DOC_METRIC,
                "doc-metric",
                s,
                s.mod.path,
                line,
                f"the module doc names metric `{text}`, which stats.rs does not declare"
                + (f" (did it mean `{close[0]}`?)" if close else ""),
                fix,
            )
    first = s.mod.doc[0][0] if s.mod.doc else 1
    missing_hooks = sorted(code_hooks - listed)
    if missing_hooks:
        yield finding(
            WHY_DOC_DRIFT,
            "doc-omits",
            s,
            s.mod.path,
            hook_line or first,
            f"the module doc does not list hook(s) {_lines(missing_hooks)}",
            fix,
        )
    missing = sorted(
        m for m in code_metrics - listed_metrics if not m.startswith("rezolus_bpf_run_")
    )
    if missing:
        yield finding(
            WHY_DOC_DRIFT,
            "doc-omits",
            s,
            s.mod.path,
            metric_line or first,
            f"the module doc does not list metric(s) {_lines(missing)}",
            fix,
        )


CHECKS = (
    check_shared_hooks,
    check_maps,
    check_bank_widths,
    check_metric_declarations,
    check_descriptions,
    check_refresh_io,
    check_hot_path,
    check_histograms,
    check_acquisition_groups,
    check_twins,
    check_module_doc,
)


# --------------------------------------------------------------------------
# waivers
# --------------------------------------------------------------------------

WAIVER = re.compile(r"\b(P\d+(?:\s*,\s*P\d+)*)\s+exception\s*:\s*(.*)$")
MIN_REASON_WORDS = 3


def _comment_block(text: Text, start: int, end: int) -> list[tuple[int, str]]:
    """Comments on lines start..end and in the comment lines directly above `start`."""
    lines = text.lines()
    first = start
    while first > 1:
        above = lines[first - 2].strip() if first - 2 < len(lines) else ""
        if above.startswith(("//", "/*", "*", "#[")) and not above.startswith("//!"):
            first -= 1
        else:
            break
    found = []
    for number in range(first, end + 1):
        for comment in text.comments_by_line.get(number, []):
            found.append((number, comment.strip()))
    return found


def waiver_for(f: Finding, texts: dict[Path, Text]) -> tuple[str, int] | None:
    """The reason and line of a `P<n> exception: <reason>` comment on one of the
    finding's spans, if that comment names the finding's principle and gives a
    reason of at least MIN_REASON_WORDS words (a continuation comment line counts)."""
    for path, start, end in f.spans:
        text = texts.get(path)
        if text is None:
            continue
        block = _comment_block(text, start, end)
        for i, (line, comment) in enumerate(block):
            m = WAIVER.search(comment)
            if not m or f.principle not in re.findall(r"P\d+", m.group(1)):
                continue
            reason = m.group(2).strip()
            for next_line, more in block[i + 1 :]:
                if next_line != line + 1 + reason.count("\n") or WAIVER.search(more) or not more:
                    break
                reason += "\n" + more
            reason = " ".join(reason.split())
            if len(re.findall(r"[A-Za-z]{2,}", reason)) >= MIN_REASON_WORDS:
                return reason, line
    return None


def cached_text(path: Path, texts: dict[Path, Text]) -> Text:
    if path not in texts:
        texts[path] = Text(path, read_text(path))
    return texts[path]


__all__ = ["CHECKS", "Finding", "TreeFacts", "lex", "waiver_for"]
