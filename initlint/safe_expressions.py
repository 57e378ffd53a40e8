"""A strict grammar for the symbolic sizes a ``.pt2`` archive carries, checked before any library
evaluates them.

``torch.export.load`` hands each size expression of ``models/*.json`` (``expr_str``, e.g.
``Symbol('s31', positive=True, integer=True)`` or ``2*s0 + 1``) and each range-constraint name
to ``sympy.sympify``, which evaluates it as Python: ``(__import__('os').system('...'))*0 + s0``
runs a command. Here each string is parsed with :mod:`ast` (parsing evaluates nothing) and
accepted only if it is arithmetic on integers and symbol names, sympy constructors from a fixed
list called with such arguments, comparisons and boolean connectives: no attribute access, no
subscripts, no calls but the listed constructors, no dunder or builtin names, no huge literals
or exponents (``10**10**10`` would hang sympy as surely as code would).
"""

from __future__ import annotations

import ast
import builtins
import re

# sympy and torch.utils._sympy constructors that torch's serializer writes (srepr form) or its
# deserializer passes to sympify as locals.
FUNCTIONS = frozenset(
    {
        "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Mod", "Max", "Min", "Abs",
        "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "StrictLessThan", "StrictGreaterThan", "LessThan", "GreaterThan",
        "Equality", "Unequality", "And", "Or", "Not", "BooleanTrue", "BooleanFalse", "Piecewise", "ExprCondPair",
        "floor", "ceiling", "sqrt", "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt",
        "FloorToInt", "CeilDiv", "LShift", "RShift", "IsNonOverlappingAndDenseIndicator", "TruncToFloat",
        "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "FloatPow", "PowByNatural", "IntTrueDiv",
        "FloatTrueDiv", "OpaqueUnaryFn_exp", "OpaqueUnaryFn_log", "OpaqueUnaryFn_sqrt", "Identity", "BitwiseFn_bitwise_and",
        "BitwiseFn_bitwise_or", "BitwiseFn_bitwise_xor",
    }
)
CONSTANT_NAMES = frozenset({"oo", "zoo", "nan", "true", "false", "True", "False", "S", "pi", "E"})
_SYMBOL = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_BUILTINS = frozenset(dir(builtins))
MAX_LENGTH = 20_000
MAX_NODES = 5_000
MAX_DEPTH = 64
MAX_DIGITS = 40  # sizes are int64: 19 digits; rationals and float hints a little more
MAX_EXPONENT = 64
_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.BitAnd, ast.BitOr)
_COMPARISONS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)


class UnsafeExpression(ValueError):
    """The string is not in the grammar; the message says what was found."""


def check_expression(text: object) -> None:
    """Return if ``text`` is a size expression sympy may evaluate safely; else UnsafeExpression."""
    if not isinstance(text, str):
        raise UnsafeExpression(f"not a string: {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise UnsafeExpression(f"{len(text):,} characters long")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise UnsafeExpression(f"not an expression ({type(exc).__name__})") from None
    nodes = 0
    for _ in ast.walk(tree):
        nodes += 1
        if nodes > MAX_NODES:
            raise UnsafeExpression(f"more than {MAX_NODES:,} terms")
    _check(tree.body, 0)


def _check(node: ast.AST, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise UnsafeExpression(f"nested more than {MAX_DEPTH} deep")
    deeper = depth + 1
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str):  # only as a constructor's argument: no string arithmetic
            raise UnsafeExpression("a string outside a constructor call")
        _check_constant(node.value)
    elif isinstance(node, ast.Name):
        if node.id not in CONSTANT_NAMES and (not _SYMBOL.match(node.id) or node.id in _BUILTINS or node.id in FUNCTIONS):
            raise UnsafeExpression(f"the name {node.id[:40]!r} is not a symbol")
    elif isinstance(node, ast.BinOp) and isinstance(node.op, _OPERATORS):
        if isinstance(node.op, ast.Pow):
            _check_exponent(node.right)
        _check(node.left, deeper)
        _check(node.right, deeper)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
        _check(node.operand, deeper)
    elif isinstance(node, ast.Compare) and all(isinstance(op, _COMPARISONS) for op in node.ops):
        for part in (node.left, *node.comparators):
            _check(part, deeper)
    elif isinstance(node, ast.BoolOp):
        for part in node.values:
            _check(part, deeper)
    elif isinstance(node, ast.Call):
        _check_call(node, deeper)
    elif isinstance(node, ast.Tuple):  # Piecewise((value, condition), ...)
        for part in node.elts:
            _check(part, deeper)
    else:
        raise UnsafeExpression(f"{type(node).__name__} is not allowed")


def _check_constant(value: object) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if abs(value).bit_length() > MAX_DIGITS * 3.33:
            raise UnsafeExpression("an integer literal too large for a size")
        return
    if isinstance(value, float):
        return
    if isinstance(value, str):  # Symbol('s0'), Integer('12'), Float('1.5', precision=53)
        if not (_SYMBOL.match(value) or re.match(r"^[-+]?[0-9.eE+-]{1,%d}$" % MAX_DIGITS, value)) or value in _BUILTINS:
            raise UnsafeExpression(f"the string {value[:40]!r} is not a symbol name or a number")
        return
    raise UnsafeExpression(f"a {type(value).__name__} literal")


def _check_call(node: ast.Call, depth: int) -> None:
    if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
        what = node.func.id if isinstance(node.func, ast.Name) else type(node.func).__name__
        raise UnsafeExpression(f"a call of {what[:40]!r}, which is not a sympy constructor")
    if node.func.id == "Pow" and len(node.args) == 2:
        _check_exponent(node.args[1])
    for arg in node.args:
        if isinstance(arg, ast.Starred):
            raise UnsafeExpression("a starred argument")
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            _check_constant(arg.value)
        else:
            _check(arg, depth)
    for keyword in node.keywords:
        if keyword.arg is None or not _SYMBOL.match(keyword.arg):
            raise UnsafeExpression("a ** argument")
        if not (isinstance(keyword.value, ast.Constant) and isinstance(keyword.value.value, (bool, int, type(None)))):
            raise UnsafeExpression(f"the argument {keyword.arg}= is not a constant")
        _check_constant(keyword.value.value)


def _check_exponent(node: ast.AST) -> None:
    """A small integer exponent only: symbolic or huge powers make sympy compute without end."""
    value = _literal_int(node)
    if value is None or abs(value) > MAX_EXPONENT:
        raise UnsafeExpression(f"an exponent other than a small integer (at most {MAX_EXPONENT})")


def _literal_int(node: ast.AST) -> int | None:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _literal_int(node.operand)
        return None if inner is None else -inner
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Integer" and len(node.args) == 1:
        return _literal_int(node.args[0])
    return None
