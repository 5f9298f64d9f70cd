"""C types as the expression checker sees them.

Types are small immutable values with a compact text form (`code`) so that
the index built from a `vmlinux.h` (see `vmlinux.py`) can be stored as JSON:

    i4 u8 b1        signed / unsigned / bool integer of 1, 2, 4 or 8 bytes
    e4+2 e4-8       an enum: its size, whether a constant is negative, and the bits its
                    constants need (clang judges comparisons by that range)
    *<type>         pointer
    [N]<type>       array of N
    s:<name>        struct, u:<name> union (anonymous ones get '@<n>' names)
    f v d ?         function, void, floating point, anything else
"""

from __future__ import annotations

from dataclasses import dataclass

# BPF is LP64 (clang -target bpf: long is 8 bytes, char is signed).
BASE_INTEGERS: dict[tuple[str, ...], str] = {}


def _base(names: str, code: str) -> None:
    for spelling in names.split("|"):
        BASE_INTEGERS[tuple(sorted(spelling.split()))] = code


_base("char|signed char", "i1")
_base("unsigned char", "u1")
_base("short|short int|signed short|signed short int|short signed int", "i2")
_base("unsigned short|unsigned short int|short unsigned int", "u2")
_base("int|signed|signed int", "i4")
_base("unsigned|unsigned int", "u4")
_base("long|long int|signed long|signed long int|long signed int", "i8")
_base("unsigned long|unsigned long int|long unsigned int", "u8")
_base(
    "long long|long long int|signed long long|signed long long int|long long signed int", "i8"
)
_base("unsigned long long|unsigned long long int|long long unsigned int", "u8")
_base("_Bool", "b1")

# The integer typedefs Rezolus samplers write (vmlinux.h defines them; the
# expression parser must know them to read a cast such as `(u32)x`).
FIXED_WIDTH = {
    "u8": "u1", "u16": "u2", "u32": "u4", "u64": "u8",
    "s8": "i1", "s16": "i2", "s32": "i4", "s64": "i8",
    "__u8": "u1", "__u16": "u2", "__u32": "u4", "__u64": "u8",
    "__s8": "i1", "__s16": "i2", "__s32": "i4", "__s64": "i8",
    "bool": "b1",
}  # fmt: skip


@dataclass(frozen=True)
class CType:
    code: str

    # -- kinds
    @property
    def kind(self) -> str:
        c = self.code
        if c[:2] in ("s:", "u:"):
            return "record"
        if c[0] in "iub":
            return "int"
        if c[0] == "e":
            return "enum"
        if c[0] == "*":
            return "ptr"
        if c[0] == "[":
            return "array"
        if c[:2] in ("s:", "u:"):
            return "record"
        return {"f": "func", "v": "void", "d": "float"}.get(c, "other")

    @property
    def is_integer(self) -> bool:
        return self.kind in ("int", "enum")

    @property
    def is_pointer(self) -> bool:
        return self.kind == "ptr"

    @property
    def is_record(self) -> bool:
        return self.kind == "record"

    @property
    def is_array(self) -> bool:
        return self.kind == "array"

    # -- integers
    @property
    def size(self) -> int:
        if self.kind in ("int", "enum"):
            return int(self.code[1])
        if self.kind == "ptr":
            return 8
        raise ValueError(f"no size for {self.code}")

    @property
    def signed(self) -> bool:
        if self.kind == "int":
            return self.code[0] == "i"
        if self.kind == "enum":
            return self.code[2] == "-"
        return False

    @property
    def bits(self) -> int:
        return 1 if self.code == "b1" else self.size * 8

    @property
    def range(self) -> tuple[int, int]:
        """Smallest and largest value an object of this integer type holds."""
        if self.code == "b1":
            return 0, 1
        bits = int(self.code[3:]) if self.kind == "enum" else self.size * 8
        if self.signed:
            return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return 0, (1 << bits) - 1

    # -- derived types
    @property
    def target(self) -> "CType":
        """What a pointer points to, or an array's element."""
        if self.kind == "ptr":
            return CType(self.code[1:])
        if self.kind == "array":
            return CType(self.code[self.code.index("]") + 1 :])
        raise ValueError(f"{self.code} is not a pointer or array")

    @property
    def length(self) -> int:
        return int(self.code[1 : self.code.index("]")] or 0)

    @property
    def record(self) -> str:
        """`s:name` / `u:name` of a struct or union type."""
        return self.code

    def describe(self) -> str:
        """How a message names the type."""
        k = self.kind
        if k == "int":
            if self.code == "b1":
                return "bool"
            return f"{'s' if self.signed else 'u'}{self.size * 8}"
        if k == "enum":
            return f"enum ({self.size * 8}-bit)"
        if k == "ptr":
            return f"pointer to {self.target.describe()}"
        if k == "array":
            return f"array of {self.length} {self.target.describe()}"
        if k == "record":
            kind, name = self.code.split(":", 1)
            word = "struct" if kind == "s" else "union"
            return f"anonymous {word}" if name.startswith("@") else f"{word} {name}"
        return {"func": "function", "void": "void", "float": "floating point"}.get(k, "type")


def integer(size: int, signed: bool) -> CType:
    return CType(f"{'i' if signed else 'u'}{size}")


INT = integer(4, True)
UINT = integer(4, False)
LONG = integer(8, True)
ULONG = integer(8, False)


def promote(t: CType) -> CType:
    """C's integer promotions: anything narrower than int becomes int."""
    if t.kind == "enum":
        return UINT if not t.signed and t.size >= 4 else INT if t.size <= 4 else integer(8, t.signed)
    if t.size < 4:
        return INT
    return integer(t.size, t.signed)


def arithmetic(a: CType, b: CType) -> CType:
    """C's usual arithmetic conversions for two integer operands (LP64)."""
    a, b = promote(a), promote(b)
    if a == b:
        return a
    if a.signed == b.signed:
        return a if a.size >= b.size else b
    unsigned, signed = (a, b) if not a.signed else (b, a)
    if unsigned.size >= signed.size:
        return unsigned
    return signed  # a wider signed type holds every value of the narrower unsigned one


def c_integer_name(t: CType) -> str:
    """The Rezolus spelling of an integer type for a generated local."""
    if t.code == "b1":
        return "bool"
    return f"{'s' if t.signed else 'u'}{t.size * 8}"
