"""What the running kernel's own BTF says, where it is readable.

A sampler is compiled against the target tree's vmlinux.h and relocated
(CO-RE) against the BTF of whatever kernel loads it. A member an expression
reads that the loading kernel lacks makes the program fail to load there
(Rezolus then records the sampler as failed and runs the others). The build
host need not run the fleet's kernel, so this is not a refusal: the user is
told at render time, and the doc stub says so.

Read with `bpftool btf dump ... format raw` (about 0.5 s, once per process).
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

BTF = Path("/sys/kernel/btf/vmlinux")
_TYPE = re.compile(r"^\[(\d+)\] (\w+) '([^']*)'(?: type_id=(\d+))?(?:.* nr_elems=(\d+))?")
_MEMBER = re.compile(r"^\t'([^']*)' type_id=(\d+) bits_offset=(\d+)(?: bitfield_size=(\d+))?")
KINDS = {"INT": "int", "ENUM": "enum", "ENUM64": "enum", "PTR": "ptr", "STRUCT": "record",
         "UNION": "record", "ARRAY": "array", "FUNC_PROTO": "func", "FLOAT": "float"}  # fmt: skip


@dataclass(frozen=True)
class RunningMember:
    offset: int  # bytes from the start of the struct
    kind: str  # int, enum, ptr, record, array, ... (what CO-RE compares)
    bits: int | None  # bit-field width
    length: int | None = None  # arrays: the element count
    record: str | None = None  # the struct/union it is or points to ('s:name', or 'id:N')


@functools.lru_cache(maxsize=1)
def _types() -> dict[int, list] | None:
    """id -> [kind, name, type_id, members [(name, type_id, bit offset, bit-field size)]];
    None if unreadable."""
    if shutil.which("bpftool") is None or not BTF.exists():
        return None
    try:
        dump = subprocess.run(
            ["bpftool", "btf", "dump", "file", str(BTF), "format", "raw"],
            capture_output=True, text=True, timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    types: dict = {}
    current = None
    for line in dump.splitlines():
        m = _TYPE.match(line)
        if m:
            current = [m.group(2), m.group(3), int(m.group(4)) if m.group(4) else None, [],
                       int(m.group(5)) if m.group(5) else None]
            types[int(m.group(1))] = current
            continue
        f = _MEMBER.match(line)
        if f and current is not None:
            bits = int(f.group(4)) if f.group(4) else None
            current[3].append((f.group(1), int(f.group(2)), int(f.group(3)), bits))
    return types or None


@functools.lru_cache(maxsize=1)
def _records() -> dict[str, int]:
    """'s:name' / 'u:name' -> BTF id of each named struct and union."""
    types = _types() or {}
    out = {}
    for tid, (kind, name, *_) in types.items():
        if kind in ("STRUCT", "UNION") and name != "(anon)":
            out.setdefault(f"{'s' if kind == 'STRUCT' else 'u'}:{name}", tid)
    return out


_QUALIFIERS = ("CONST", "VOLATILE", "TYPEDEF", "RESTRICT", "TYPE_TAG")


def _strip(types: dict, tid: int) -> int:
    for _ in range(32):
        if types.get(tid, ["VOID"])[0] not in _QUALIFIERS:
            break
        tid = types[tid][2]
    return tid


def _record_code(types: dict, tid: int) -> str:
    kind, name = types[tid][0], types[tid][1]
    if name == "(anon)":
        return f"id:{tid}"
    return f"{'s' if kind == 'STRUCT' else 'u'}:{name}"


def _resolve(types: dict, tid: int) -> tuple[str, int | None, str | None]:
    """The kind CO-RE compares (through typedefs and qualifiers), an array's length,
    and the record the member is or points to."""
    tid = _strip(types, tid)
    entry = types.get(tid, ["VOID", "", None, [], None])
    record = None
    if entry[0] in ("STRUCT", "UNION"):
        record = _record_code(types, tid)
    elif entry[0] == "PTR" and entry[2] is not None:
        target = _strip(types, entry[2])
        if types.get(target, ["VOID"])[0] in ("STRUCT", "UNION"):
            record = _record_code(types, target)
    return entry[0], entry[4], record


@functools.lru_cache(maxsize=4096)
def members(record: str) -> dict[str, RunningMember] | None:
    """Members of a struct/union in the running kernel (anonymous members
    flattened, as C reaches them); None if BTF is unreadable or lacks the record."""
    types = _types()
    if types is None:
        return None
    tid = int(record[3:]) if record.startswith("id:") else _records().get(record)
    if tid is None or tid not in types:
        return None
    out: dict[str, RunningMember] = {}

    def walk(tid: int, base: int) -> None:
        for name, member_tid, offset, bits in types[tid][3]:
            kind, length, target = _resolve(types, member_tid)
            if name == "(anon)":
                inner = member_tid
                while types.get(inner, ["VOID"])[0] in ("CONST", "VOLATILE", "TYPEDEF"):
                    inner = types[inner][2]
                if kind in ("STRUCT", "UNION"):
                    walk(inner, base + offset // 8)
                continue
            out.setdefault(
                name,
                RunningMember(base + offset // 8, KINDS.get(kind, "other"), bits, length, target),
            )

    walk(tid, 0)
    return out


def compatible(local_kind: str, local_bits: int | None, there: RunningMember) -> bool:
    """Whether CO-RE relocates a member of this kind onto the running kernel's member
    (libbpf compares kinds: an int is not an enum; and a bit-field stays one)."""
    if (local_bits is None) != (there.bits is None):
        return False
    return local_kind == there.kind


def readable() -> bool:
    return _types() is not None


def chain_problem(root: str, accesses: list[tuple[str, int | None, str, int | None]]) -> str | None:
    """Walk a member chain through the running kernel's types, as CO-RE relocates it.

    `root`: the record the first member belongs to ('s:name'); `accesses`:
    (member, subscript or None, local kind, local bit-field width) in order.
    None if every step resolves, else what does not."""
    record = root
    for name, subscript, kind, bits in accesses:
        found = members(record) if record else None
        if found is None or name not in found:
            return f"{record.split(':', 1)[-1] if record else '?'} has no member {name}"
        there = found[name]
        if subscript is not None:
            if there.kind != "array" or there.length is None or subscript >= there.length:
                return f"{name}[{subscript}] is outside the running kernel's {name}"
        elif not compatible(kind, bits, there):
            return f"{name} has another kind of type in the running kernel"
        record = there.record
    return None
