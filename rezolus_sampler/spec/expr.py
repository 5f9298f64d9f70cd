"""The expression language of the answers: parsed by pycparser, checked, printed.

An answer such as `index: {op: rq->cmd_flags & 0xff}` or `when: error != 0`
is C text. It is parsed with pycparser into a syntax tree, every node is
checked against what the hook offers (its typed arguments, the structs of
the target's `vmlinux.h` on both architectures), and the C that is compiled
is printed from the checked tree, never pasted from the answer.

Allowed: the hook's arguments (classic tracepoints: `args->field`), member
access (`->` on pointers to structs, `.` on embedded ones, a constant
subscript of an array member), integer literals, the arithmetic, bitwise,
comparison, logical and conditional operators, and casts to integer types.
Named builtins (`now`, `current_thread`) are expanded by the generator.
Refused, each with one message naming the construct: calls, assignments,
increments and decrements, the comma operator, string and character
literals, statements, comments, preprocessor lines, `&`/`*`/`sizeof`, and
anything clang would warn about under `-Wall -Werror` (constant overflow,
shift counts out of range, division by zero, comparisons that are always
true or false, constant operands of `&&`/`||`, signed division, which the
BPF target cannot compile).

`Expr.c(variant)` prints the checked tree for one kind of program:
- "btf": a tp_btf program. Arguments are BTF-typed: a field one hop from an
  argument is read directly, behind a NULL check (newer kernels mark some
  tracepoint arguments nullable and refuse an unchecked dereference);
  longer chains go through `BPF_CORE_READ`, which reads NULL as 0 too.
- "raw": a raw_tp program: every read through a pointer is `BPF_CORE_READ`
  (bit-fields: `BPF_CORE_READ_BITFIELD_PROBED`), relocated by CO-RE.
- "tracepoint": a classic tracepoint: `args->field` reads the event record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pycparser import c_ast, c_parser

from rezolus_sampler.spec.ctype import (
    BASE_INTEGERS,
    FIXED_WIDTH,
    INT,
    CType,
    arithmetic,
    integer,
    promote,
)
from rezolus_sampler.spec.vmlinux import TypeIndex

MAX_EXPR_LEN = 200
ROLES = ("index", "by", "when", "value", "key")


class ExprError(ValueError):
    """An expression that cannot be accepted; the message names the construct."""


# --------------------------------------------------------------------------
# what an expression may name


@dataclass(frozen=True)
class Builtin:
    name: str
    type: CType
    c: str  # what the generator prints
    doc: str


BUILTINS = {
    "now": Builtin("now", CType("u8"), "bpf_ktime_get_ns()", "the time of the event in ns"),
    "current_thread": Builtin(
        "current_thread",
        CType("u4"),
        "(u32)bpf_get_current_pid_tgid()",
        "the id of the thread the event happens on",
    ),
}


@dataclass(frozen=True)
class Scope:
    """What an expression at one hook may name."""

    hook: str  # 'category:event', for messages
    args: tuple[tuple[str, CType], ...]  # argument name -> type ('args' for classic)
    classic: bool
    types: tuple[TypeIndex, ...]  # x86_64 first, then aarch64: members must exist in both
    builtins: tuple[str, ...] = ()

    def arg(self, name: str) -> CType | None:
        return dict(self.args).get(name)

    def describe_args(self) -> str:
        if self.classic:
            fields = self.record_fields()
            return "the record's fields: " + ", ".join(
                f"args->{n} ({t.describe()})" for n, t in fields
            )
        return "arguments: " + ", ".join(f"{n} ({t.describe()})" for n, t in self.args)

    def record_fields(self) -> list[tuple[str, CType]]:
        record = dict(self.args)["args"].target
        members = self.types[0].members(record) or {}
        return [(m.name, m.type) for m in members.values() if m.name not in ("ent", "__data")]


# --------------------------------------------------------------------------
# the checked tree


@dataclass(frozen=True)
class Node:
    type: CType
    const: int | None = field(default=None, kw_only=True)  # value when constant
    boolean: bool = field(default=False, kw_only=True)  # known to be 0 or 1

    @property
    def atomic(self) -> bool:
        return False


@dataclass(frozen=True)
class Lit(Node):
    text: str

    @property
    def atomic(self) -> bool:
        return True


@dataclass(frozen=True)
class Name(Node):
    name: str
    probed: bool = False  # a pointer the generator read with BPF_CORE_READ: untrusted in tp_btf

    @property
    def atomic(self) -> bool:
        return True


@dataclass(frozen=True)
class Call(Node):
    """A builtin the generator expands (`now` -> bpf_ktime_get_ns())."""

    builtin: Builtin

    @property
    def atomic(self) -> bool:
        return True


@dataclass(frozen=True)
class Member(Node):
    base: Node
    name: str
    arrow: bool
    bits: int | None = None
    shared: bool = False  # in a union: its bytes may also be a pointer member's

    @property
    def atomic(self) -> bool:
        return True


@dataclass(frozen=True)
class Subscript(Node):
    base: Node
    index: int

    @property
    def atomic(self) -> bool:
        return True


@dataclass(frozen=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Cond(Node):
    cond: Node
    then: Node
    other: Node


@dataclass(frozen=True)
class Cast(Node):
    spelling: str
    operand: Node


# --------------------------------------------------------------------------
# parsing

_LEXICAL = (
    ("//", "a comment"),
    ("/*", "a comment"),
    ("#", "a preprocessor token"),
    ('"', "a string literal"),
    ("'", "a character literal"),
    (";", "a statement separator ';'"),
    ("{", "a brace (a statement block)"),
    ("}", "a brace (a statement block)"),
    ("\\", "a backslash"),
)
_IDENT = re.compile(r"\b[A-Za-z_]\w*\b")
WRAPPER = "__rezolus_expression"
ALLOWED = (
    "the hook's arguments, member access (-> . and a constant [i] on array members), integer "
    "literals, + - * / % << >> & | ^ ~ ! && || == != < <= > >= ?: and casts to integer types"
)


def _typedef_names(text: str, types: TypeIndex | None) -> list[str]:
    """Typedef names the text uses, so the parser reads `(u32)x` as a cast."""
    names = []
    for ident in dict.fromkeys(_IDENT.findall(text)):
        if ident in FIXED_WIDTH or (types is not None and ident in types.typedefs):
            names.append(ident)
    return names


def parse(value: Any, what: str, types: TypeIndex | None = None) -> c_ast.Node:
    """pycparser's tree of one C expression, or ExprError naming what is wrong."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ExprError(f"{what} must be a C expression, for example 'skb->len', not {value!r}")
    text = str(value).strip()
    if not text:
        raise ExprError(f"{what} is empty; give a C expression, for example 'skb->len'")
    if len(text) > MAX_EXPR_LEN:
        raise ExprError(f"{what} is {len(text)} characters; the limit is {MAX_EXPR_LEN}")
    bad = [c for c in text if ord(c) < 32 and c not in "\t\n" or ord(c) == 127]
    if bad or not text.isascii():
        raise ExprError(f"{what} {text!r} contains characters other than printable ASCII")
    for token, construct in _LEXICAL:
        if token in text:
            raise ExprError(f"{what} {text!r} contains {construct}; {_allowed_hint()}")
    prelude = "".join(f"typedef int {name};\n" for name in _typedef_names(text, types))
    source = f"{prelude}void {WRAPPER}(void) {{\n({text}\n);\n}}\n"
    try:
        ast = c_parser.CParser().parse(source, "expression")
    except RecursionError:
        raise ExprError(f"{what} {text!r} is nested too deeply") from None
    except Exception as err:  # pycparser's ParseError, and lexer errors
        detail = re.sub(r"^expression:\d+:\d+:\s*", "", str(err))
        raise ExprError(f"{what} {text!r} is not a C expression ({detail})") from None
    body = ast.ext[-1].body.block_items or []
    if len(body) != 1 or isinstance(body[0], (c_ast.Decl, c_ast.Compound)):
        raise ExprError(f"{what} {text!r} is not a single C expression; {_allowed_hint()}")
    return body[0]


def _allowed_hint() -> str:
    return f"allowed: {ALLOWED}"


# --------------------------------------------------------------------------
# checking


class _Checker:
    def __init__(self, scope: Scope, what: str, text: str):
        self.scope = scope
        self.what = what
        self.text = text

    def fail(self, message: str) -> ExprError:
        return ExprError(f"{self.what} {self.text!r}: {message}")

    # -- entry
    def check(self, node: c_ast.Node) -> Node:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise self.fail(self._refusal(node))
        return method(node)

    def _refusal(self, node: c_ast.Node) -> str:
        kind = type(node).__name__
        named = {
            "FuncCall": "calls are refused (kernel helpers included): expressions must not have "
            "side effects; 'now' and 'current_thread' are builtins",
            "Assignment": "assignments are refused: expressions must not have side effects",
            "ExprList": "the comma operator is refused: give one expression",
            "CompoundLiteral": "compound literals are refused",
            "InitList": "initializer lists are refused",
            "Typename": "a type alone is not a value",
            "GenericSelection": "_Generic is refused",
            "TypeOf": "typeof is refused",
        }
        return named.get(kind, f"{kind} is refused") + f"; {_allowed_hint()}"

    def _ID(self, node: c_ast.ID) -> Node:
        name = node.name
        found = self.scope.arg(name)
        if found is not None:
            if self.scope.classic:
                return Name(found, name)
            if found.is_integer:
                return Name(found, name, boolean=found.code == "b1")
            return Name(found, name)
        if name in BUILTINS and name in self.scope.builtins:
            b = BUILTINS[name]
            return Call(b.type, b)
        if self.scope.classic:
            fields = self._field_names()
            fix = _fix_first(name if name in fields else "", ["args->" + f for f in fields], name, fields)
            raise self.fail(
                f"{fix}{name!r} is not known here; classic tracepoints read their record as "
                f"args->field ({self.scope.describe_args()})"
            )
        fix = _fix_first("", [], name, [n for n, _ in self.scope.args])
        raise self.fail(
            f"{fix}{name!r} is not an argument of {self.scope.hook} ({self.scope.describe_args()}; "
            f"builtins: {', '.join(BUILTINS)})"
        )

    def _field_names(self) -> list[str]:
        return [n for n, _ in self.scope.record_fields()]

    def _Constant(self, node: c_ast.Constant) -> Node:
        text = node.value
        if node.type not in ("int", "long int", "long long int", "unsigned int",
                             "unsigned long int", "unsigned long long int"):  # fmt: skip
            raise self.fail(f"{text} is a {node.type} literal; only integer literals are allowed")
        m = re.fullmatch(r"(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)([uUlL]*)", text)
        if not m:
            raise self.fail(f"{text} is not an integer literal")
        digits, suffix = m.groups()
        value = int(digits, 16) if digits[:2].lower() == "0x" else int(digits, 8 if digits.startswith("0") and len(digits) > 1 else 10)
        unsigned = "u" in suffix.lower()
        if value >= 1 << 64:
            raise self.fail(f"{text} does not fit in 64 bits")
        decimal = not digits.startswith("0")
        if decimal and not unsigned and value >= 1 << 63:
            raise self.fail(f"{text} does not fit a signed 64-bit type; write {text}u")
        # C's type of an integer literal (LP64): the first of its candidates that holds it
        long = "l" in suffix.lower()
        if unsigned:
            t = integer(4, False) if not long and value < 1 << 32 else integer(8, False)
        elif decimal:
            t = INT if not long and value < 1 << 31 else integer(8, True)
        else:
            candidates = [(4, True), (4, False), (8, True), (8, False)]
            if long:
                candidates = candidates[2:]
            t = next(integer(s, sg) for s, sg in candidates if value <= integer(s, sg).range[1])
        return Lit(t, text, const=value)

    def _StructRef(self, node: c_ast.StructRef) -> Node:
        base = self.check(node.name)
        name = node.field.name
        arrow = node.type == "->"
        if arrow:
            if not base.type.is_pointer:
                raise self.fail(
                    f"'->{name}' needs a pointer to a struct, but {_show(base)} is "
                    f"{base.type.describe()}" + (" (use '.')" if base.type.is_record else "")
                )
            record = base.type.target
        else:
            if base.type.is_pointer:
                raise self.fail(f"'.{name}' on {_show(base)}, a pointer: use '->{name}'")
            record = base.type
        if not record.is_record:
            raise self.fail(f"{_show(base)} does not lead to a struct or union, so has no {name!r}")
        if self.scope.classic and isinstance(base, Name) and name in ("ent", "__data"):
            raise self.fail(
                f"args->{name} is the record's common header / payload, which tracepoint "
                f"programs may not read; {self.scope.describe_args()}"
            )
        member = None
        for types in self.scope.types:
            # anonymous records are numbered per header: find this one by its path
            here = _arch_type(base, types) if types is not self.scope.types[0] else base.type
            here_record = here.target if arrow and here is not None and here.is_pointer else here
            if here_record is None or not here_record.is_record:
                raise self.fail(f"{_show(base)} has another type in the aarch64 vmlinux.h")
            members = types.members(here_record)
            if members is None:
                raise self.fail(f"{record.describe()} is only declared in vmlinux.h, not defined")
            found = members.get(name)
            if found is None:
                arch = "x86_64" if types is self.scope.types[0] else "aarch64"
                raise self.fail(
                    f"{record.describe()} has no member {name!r} in the {arch} vmlinux.h"
                    + _suggest(name, list(members))
                )
            if member is None:
                member = found
            elif found.type.kind != member.type.kind:
                raise self.fail(f"{record.describe()}.{name} has different types on x86_64 and aarch64")
        assert member is not None
        if base.__class__ is Member and base.bits is not None:  # pragma: no cover - records only
            raise self.fail("a bit-field has no members")
        shared = member.union or record.code.startswith("u:") or getattr(base, "shared", False)
        return Member(member.type, base, name, arrow, member.bits, shared, boolean=member.type.code == "b1")

    def _ArrayRef(self, node: c_ast.ArrayRef) -> Node:
        base = self.check(node.name)
        if not base.type.is_array or not isinstance(base, Member):
            raise self.fail(
                f"'[...]' applies only to array members; {_show(base)} is {base.type.describe()}"
            )
        index = self.check(node.subscript)
        if index.const is None:
            raise self.fail("an array member's subscript must be a constant")
        if not 0 <= index.const < base.type.length:
            raise self.fail(f"subscript {index.const} is outside {base.name}[{base.type.length}]")
        element = base.type.target
        return Subscript(element, base, index.const, boolean=element.code == "b1")

    def _UnaryOp(self, node: c_ast.UnaryOp) -> Node:
        op = node.op
        if op in ("++", "--", "p++", "p--"):
            raise self.fail("increment and decrement are refused: expressions must not have side effects")
        if op in ("&", "*"):
            raise self.fail(f"unary '{op}' (address-of / dereference) is refused; {_allowed_hint()}")
        if op in ("sizeof", "_Alignof", "_Sizeof"):
            raise self.fail(f"{op} is refused; {_allowed_hint()}")
        if op not in ("-", "+", "~", "!"):
            raise self.fail(f"unary '{op}' is refused; {_allowed_hint()}")
        operand = self.check(node.expr)
        if op == "!":
            self.truth(operand, "!")
            const = None if operand.const is None else int(not operand.const)
            return Unary(INT, op, operand, const=const, boolean=True)
        self.integer(operand, f"unary {op}")
        if op == "~" and (operand.boolean or operand.type.code == "b1"):
            raise self.fail(f"'~' on a true/false value {_show(operand)}: did you mean '!'?")
        t = promote(operand.type)
        const = None
        if operand.const is not None:
            v = operand.const
            const = self.fit(-v if op == "-" else v if op == "+" else ~v, t, f"{op}{v}")
        return Unary(t, op, operand, const=const)

    def _Cast(self, node: c_ast.Cast) -> Node:
        decl = node.to_type.type
        if not isinstance(decl, c_ast.TypeDecl) or not isinstance(decl.type, c_ast.IdentifierType):
            raise self.fail("only casts to integer types are allowed, for example (u32)x")
        names = decl.type.names
        spelling = " ".join(names)
        t = None
        if len(names) == 1 and names[0] in FIXED_WIDTH:
            t = CType(FIXED_WIDTH[names[0]])
        elif len(names) == 1 and names[0] in self.scope.types[0].typedefs:
            t = self.scope.types[0].typedefs[names[0]]
        else:
            code = BASE_INTEGERS.get(tuple(sorted(names)))
            t = CType(code) if code else None
        if t is None or not t.is_integer:
            raise self.fail(f"({spelling}) is not an integer type; only casts to integer types are allowed")
        operand = self.check(node.expr)
        if not operand.type.is_integer:
            raise self.fail(
                f"cast of {_show(operand)} ({operand.type.describe()}): only integers may be cast"
            )
        const = None if operand.const is None else _wrap(operand.const, t)
        return Cast(t, spelling, operand, const=const, boolean=t.code == "b1" or operand.boolean)

    def _TernaryOp(self, node: c_ast.TernaryOp) -> Node:
        cond = self.check(node.cond)
        self.truth(cond, "?:")
        then, other = self.check(node.iftrue), self.check(node.iffalse)
        self.integer(then, "?:")
        self.integer(other, "?:")
        t = arithmetic(then.type, other.type)
        const = None
        if cond.const is not None:
            chosen = then if cond.const else other
            const = None if chosen.const is None else _wrap(chosen.const, t)
        return Cond(t, cond, then, other, const=const, boolean=then.boolean and other.boolean)

    def _BinaryOp(self, node: c_ast.BinaryOp) -> Node:
        op = node.op
        left, right = self.check(node.left), self.check(node.right)
        if op in ("&&", "||"):
            for side in (left, right):
                self.truth(side, op)
            return Binary(INT, op, left, right, boolean=True)
        if op in ("==", "!=", "<", "<=", ">", ">="):
            return self.comparison(op, left, right)
        if op not in ("+", "-", "*", "/", "%", "<<", ">>", "&", "|", "^"):
            raise self.fail(f"operator '{op}' is refused; {_allowed_hint()}")
        self.integer(left, op)
        self.integer(right, op)
        if op in ("<<", ">>"):
            t = promote(left.type)
            if right.const is not None and not 0 <= right.const < t.bits:
                raise self.fail(
                    f"shift count {right.const} is outside 0..{t.bits - 1} for a {t.describe()} value"
                )
            if op == "<<" and left.const is not None and left.const < 0:
                raise self.fail(f"shifting the negative value {left.const} is undefined in C")
        else:
            t = arithmetic(left.type, right.type)
        if op in ("/", "%"):
            if t.signed:
                raise self.fail(
                    f"'{op}' on signed values: BPF has no signed division; cast an operand to an "
                    f"unsigned type, for example (u64){_show(left)} {op} {_show(right)}"
                )
            if right.const == 0:
                raise self.fail(f"division by zero ('{op} 0')")
        const = None
        if left.const is not None and right.const is not None:
            const = self.fold(op, left.const, right.const, t)
        return Binary(t, op, left, right, const=const, boolean=op == "&" and (left.boolean or right.boolean))

    # -- helpers
    def integer(self, node: Node, where: str) -> None:
        if not node.type.is_integer:
            raise self.fail(
                f"'{where}' needs integers, but {_show(node)} is {node.type.describe()}"
            )

    def scalar(self, node: Node, where: str) -> None:
        if not (node.type.is_integer or node.type.is_pointer):
            raise self.fail(f"'{where}' needs a value, but {_show(node)} is {node.type.describe()}")

    def truth(self, node: Node, where: str) -> None:
        """A value used as true/false: it must be able to be either (clang warns otherwise)."""
        self.scalar(node, where)
        decided = node.const
        if decided is None and isinstance(node, Cond) and None not in (node.then.const, node.other.const):
            if bool(node.then.const) == bool(node.other.const):
                decided = node.then.const
        if decided is None and isinstance(node, Binary) and node.op in ("|", "&"):
            consts = [side.const for side in (node.left, node.right) if side.const is not None]
            if node.op == "|" and any(consts):
                decided = 1  # clang: "bitwise or with non-zero value always evaluates to true"
            elif node.op == "&" and 0 in consts:
                decided = 0
        if decided is not None:
            raise self.fail(
                f"{_show(node)} is always {'true' if decided else 'false'} where '{where}' tests "
                f"it; remove it or test a value that can change"
            )
        if isinstance(node, Binary) and node.op == "<<":
            raise self.fail(
                f"'{where}' tests the result of '<<' as true/false; compare it instead: "
                f"({_show(node)}) != 0"
            )

    def fit(self, value: int, t: CType, shown: str) -> int:
        lo, hi = t.range
        if t.signed and not lo <= value <= hi:
            raise self.fail(f"{shown} overflows {t.describe()}")
        return _wrap(value, t)

    def fold(self, op: str, a: int, b: int, t: CType) -> int:
        shown = f"{a} {op} {b}"
        if op == "+":
            v = a + b
        elif op == "-":
            v = a - b
        elif op == "*":
            v = a * b
        elif op == "/":
            v = _wrap(a, t) // _wrap(b, t)
        elif op == "%":
            v = _wrap(a, t) % _wrap(b, t)
        elif op == "<<":
            v = a << b
            if t.signed and v > t.range[1]:
                raise self.fail(f"{shown} overflows {t.describe()}")
        elif op == ">>":
            v = a >> b
        elif op == "&":
            v = a & b
        elif op == "|":
            v = a | b
        else:
            v = a ^ b
        return self.fit(v, t, shown)

    def comparison(self, op: str, left: Node, right: Node) -> Node:
        for side in (left, right):
            self.scalar(side, op)
        if left.type.is_pointer or right.type.is_pointer:
            both = left.type.is_pointer and right.type.is_pointer
            null = (right if left.type.is_pointer else left).const == 0
            if op not in ("==", "!=") or not (both or null):
                raise self.fail(
                    f"a pointer may only be compared for equality with 0 (NULL) or a pointer of "
                    f"the same type: {_show(left)} {op} {_show(right)}"
                )
            if both and left.type != right.type:
                raise self.fail("comparison of pointers to different types")
            return Binary(INT, op, left, right, boolean=True)
        if _same(left, right):
            raise self.fail(f"{_show(left)} {op} {_show(right)} compares a value with itself")
        const = None
        if left.const is not None and right.const is not None:
            common = arithmetic(left.type, right.type)
            const = int(_compare(op, _wrap(left.const, common), _wrap(right.const, common)))
        else:
            self.tautology(op, left, right)
            self.bitwise_tautology(op, left, right)
        return Binary(INT, op, left, right, const=const, boolean=True)

    def tautology(self, op: str, left: Node, right: Node) -> None:
        """Refuse a comparison that the other operand's type decides (clang warns)."""
        constant, other = (right, left) if right.const is not None else (left, right)
        if constant.const is None:
            return
        t = CType("b1") if other.boolean else other.type
        common = arithmetic(t, constant.type)
        value = _wrap(constant.const, common)
        lo, hi = t.range
        if lo < 0 and not common.signed:  # negative values wrap to the top of the range
            intervals = [(0, hi), (_wrap(lo, common), _wrap(-1, common))]
        else:
            intervals = [(_wrap(lo, common), _wrap(hi, common))]
        if op in ("==", "!="):
            inside = any(a <= value <= b for a, b in intervals)
            decided = None if inside else op == "!="
        else:
            outcomes = {
                _compare(op, v, value) if other is left else _compare(op, value, v)
                for a, b in intervals
                for v in (a, b)
            }
            decided = outcomes.pop() if len(outcomes) == 1 else None
        if decided is not None:
            raise self.fail(
                f"{_show(left)} {op} {_show(right)} is always {'true' if decided else 'false'}: "
                f"{_show(other)} is {t.describe()} ({lo}..{hi})"
            )

    def bitwise_tautology(self, op: str, left: Node, right: Node) -> None:
        """`(x & 4) == 8` and `(x | 4) == 1` are decided by their constants (clang warns)."""
        if op not in ("==", "!="):
            return
        constant, other = (right, left) if right.const is not None else (left, right)
        if constant.const is None or not isinstance(other, Binary) or other.op not in ("&", "|"):
            return
        mask = other.right.const if other.right.const is not None else other.left.const
        if mask is None:
            return
        c = constant.const
        decided = (c & ~mask) != 0 if other.op == "&" else (mask & ~c) != 0
        if decided:
            verdict = "false" if op == "==" else "true"
            raise self.fail(f"{_show(left)} {op} {_show(right)} is always {verdict}")


def _arch_type(node: Node, types: TypeIndex) -> CType | None:
    """The type of a member chain in another architecture's index (anonymous records
    have per-header numbers, so a chain is followed there by member names)."""
    if isinstance(node, Member):
        base = _arch_type(node.base, types)
        if base is None:
            return None
        record = base.target if node.arrow and base.is_pointer else base
        found = (types.members(record) or {}).get(node.name) if record.is_record else None
        return None if found is None else found.type
    if isinstance(node, Subscript):
        base = _arch_type(node.base, types)
        return base.target if base is not None and base.is_array else None
    return node.type


def _compare(op: str, a: int, b: int) -> bool:
    return {
        "==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b,
    }[op]  # fmt: skip


def _wrap(value: int, t: CType) -> int:
    """`value` converted to integer type `t` (two's complement, as C does)."""
    if t.code == "b1":
        return int(value != 0)
    bits = t.size * 8
    value &= (1 << bits) - 1
    if t.signed and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value


def _same(a: Node, b: Node) -> bool:
    return a.const is None and print_c(a, "tracepoint") == print_c(b, "tracepoint")


def _show(node: Node) -> str:
    return print_c(node, "tracepoint")


def _fix_first(exact: str, spelled: list[str], name: str, known: list[str]) -> str:
    """'did you mean X? ' to open a message: the exact field (`exact`, shown as in
    `spelled`) or the closest names."""
    import difflib

    if exact:
        return f"did you mean args->{exact}? "
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    shown = [spelled[known.index(c)] if spelled else c for c in close]
    return f"did you mean {', '.join(shown)}? " if close else ""


def _suggest(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


# --------------------------------------------------------------------------
# printing


def _chain(node: Node) -> tuple[Node, list[Node]]:
    """The root of a member chain and its accesses, outermost last."""
    accesses = []
    while isinstance(node, (Member, Subscript)):
        accesses.append(node)
        node = node.base
    return node, list(reversed(accesses))


def _accessor(accesses: list[Node]) -> list[str]:
    """BPF_CORE_READ's accessor arguments: one per pointer hop, `.x` and `[i]` kept."""
    parts: list[str] = []
    for access in accesses:
        if isinstance(access, Member) and access.arrow:
            parts.append(access.name)
        elif isinstance(access, Member):
            parts[-1] += f".{access.name}"
        else:
            parts[-1] += f"[{access.index}]"
    return parts


def _direct(root: str, accesses: list[Node]) -> str:
    out = root
    for access in accesses:
        if isinstance(access, Member):
            out += f"{'->' if access.arrow else '.'}{access.name}"
        else:
            out += f"[{access.index}]"
    return out


def hops(node: Node) -> int:
    """Pointer hops of a member chain (how many `->`)."""
    _, accesses = _chain(node)
    return sum(1 for a in accesses if isinstance(a, Member) and a.arrow)


def print_c(node: Node, variant: str) -> str:
    """C text of a checked tree for one program variant ('btf', 'raw', 'tracepoint')."""

    def wrap(child: Node) -> str:
        text = print_c(child, variant)
        return text if child.atomic else f"({text})"

    if isinstance(node, Lit):
        return node.text
    if isinstance(node, Name):
        return node.name
    if isinstance(node, Call):
        return node.builtin.c
    if isinstance(node, (Member, Subscript)):
        root, accesses = _chain(node)
        root_text = print_c(root, variant)
        n = hops(node)
        if n == 0:
            return _direct(root_text, accesses)
        # tp_btf reads directly one hop from an argument, unless the member shares its
        # bytes with others (a union): the verifier may take such a load for the
        # overlapping pointer member, and then refuses arithmetic on it
        direct = n == 1 and not any(getattr(a, "shared", False) for a in accesses)
        direct = direct and not (isinstance(root, Name) and root.probed)
        if variant == "tracepoint":
            return _direct(root_text, accesses)
        if variant == "btf" and direct:
            read = _direct(root_text, accesses)
        else:
            parts = _accessor(accesses)
            if isinstance(node, Member) and node.bits is not None:
                read = f"BPF_CORE_READ_BITFIELD_PROBED({root_text}, {parts[-1]})"
            else:
                read = f"BPF_CORE_READ({root_text}, {', '.join(parts)})"
        if variant == "btf":
            # a tp_btf argument may be NULL (newer kernels mark some so): the verifier
            # refuses a dereference, or a BPF_CORE_READ's address arithmetic, on it
            # unchecked. Read as 0 then, as BPF_CORE_READ reads a NULL raw_tp argument.
            return f"({root_text} ? {read} : 0)"
        return read
    if isinstance(node, Unary):
        return f"{node.op}{wrap(node.operand)}"
    if isinstance(node, Cast):
        return f"({node.spelling}){wrap(node.operand)}"
    if isinstance(node, Binary):
        return f"{wrap(node.left)} {node.op} {wrap(node.right)}"
    if isinstance(node, Cond):
        return f"{wrap(node.cond)} ? {wrap(node.then)} : {wrap(node.other)}"
    raise TypeError(node)  # pragma: no cover - every node kind is printed above


def walk(node: Node):
    yield node
    for child in _children(node):
        yield from walk(child)


def _children(node: Node) -> list[Node]:
    if isinstance(node, (Member, Subscript)):
        return [node.base]
    if isinstance(node, (Unary, Cast)):
        return [node.operand]
    if isinstance(node, Binary):
        return [node.left, node.right]
    if isinstance(node, Cond):
        return [node.cond, node.then, node.other]
    return []


# --------------------------------------------------------------------------
# the public face


@dataclass(frozen=True)
class Expr:
    """A checked expression: its tree, what the answer said, and facts about it."""

    source: str  # the answer, for messages and docs
    tree: Node
    role: str

    @property
    def type(self) -> CType:
        return self.tree.type

    @property
    def const(self) -> int | None:
        return self.tree.const

    @property
    def reads(self) -> bool:
        """Whether it reads kernel memory through an argument pointer."""
        return any(hops(n) for n in walk(self.tree) if isinstance(n, (Member, Subscript)))

    @property
    def builtins(self) -> list[str]:
        return [n.builtin.name for n in walk(self.tree) if isinstance(n, Call)]

    def c(self, variant: str) -> str:
        return print_c(self.tree, variant)

    @property
    def text(self) -> str:
        """The normalised spelling (docs, comments): the classic/tp_btf direct form."""
        return print_c(self.tree, "tracepoint")

    @property
    def local_type(self) -> str:
        """The C type of a local holding this value."""
        if self.role in ("index", "key"):
            return "u64"  # negative values wrap above every bound: they are out of range
        if self.role == "when":
            return "bool"
        return "s64" if self.type.signed else "u64"

    @property
    def base_name(self) -> str:
        """A readable name for a local holding this value: the last member or argument."""
        names = [n.name for n in walk(self.tree) if isinstance(n, (Member, Name))]
        return names[0] if names else self.role


def check(value: Any, scope: Scope, role: str, what: str) -> Expr:
    """Parse and check one answer expression in `scope`; ExprError if refused."""
    assert role in ROLES
    node = parse(value, what, scope.types[0])
    text = str(value).strip()
    checker = _Checker(scope, what, text)
    tree = checker.check(node)
    expr = Expr(text, tree, role)
    if role == "when":
        checker.truth(tree, "when")
    else:
        if not tree.type.is_integer:
            noun = {"index": "an index", "by": "an amount", "value": "a value", "key": "a key"}[role]
            raise checker.fail(f"{noun} must be an integer, but this is {tree.type.describe()}")
    if role == "key" and (tree.type.size > 4 or tree.const is not None):
        raise checker.fail(
            "a latency key must be a thread or process id: a non-constant integer of at most 32 "
            "bits (current_thread, or a field such as next->pid)"
        )
    if role == "by" and tree.const is not None and tree.const <= 0:
        raise checker.fail(
            "an increment must be positive: counters only go up (a negative or zero amount "
            "would make the counter go down or count nothing)"
        )
    for n in walk(tree):
        if isinstance(n, (Member, Subscript)) and hops(n) > 9:
            raise checker.fail("BPF_CORE_READ follows at most 9 pointers; shorten the chain")
        if isinstance(n, (Member, Subscript)) and scope.classic and hops(n) > 1:
            raise checker.fail(
                "classic tracepoints read their record's fields (args->field); following a "
                "pointer stored in the record is not supported"
            )
    return expr


__all__ = [
    "BUILTINS",
    "Builtin",
    "Expr",
    "ExprError",
    "MAX_EXPR_LEN",
    "Scope",
    "check",
    "parse",
    "print_c",
]
