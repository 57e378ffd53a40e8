"""The strict grammar for .pt2 size expressions: what torch writes passes, code does not."""

from __future__ import annotations

import pytest

from initlint.safe_expressions import UnsafeExpression, check_expression

WRITTEN_BY_TORCH = [
    "Symbol('s31', positive=True, integer=True)",
    "s0",
    "2*s0 + 1",
    "Mul(Integer(2), Symbol('s0', positive=True, integer=True))",
    "FloorDiv(s0, 2)",
    "Mod(s0 - 1, 8)",
    "Max(1, s0*s1)",
    "Pow(s0, Integer(2))",
    "s0**2",
    "-s0 + oo",
    "Eq(s0, 3) & Ne(s1, 0)",
    "(s0 >= 2) and (s0 <= 4096)",
    "Piecewise((s0, Eq(s1, 0)), (1, True))",
    "Float('1.5', precision=53)",
]

HOSTILE = [
    "(__import__('os').system('touch MARKER'))*0 + s0",
    "__import__('os').system('id')",
    "open('/etc/passwd').read()",
    "exec('x = 1')",
    "s0.__class__",
    "Symbol('s0').__class__.__mro__",
    "[c for c in ().__class__.__base__.__subclasses__()]",
    "lambda: 0",
    "Symbol(*['s0'])",
    "Symbol('s0', **{'positive': True})",
    "Symbol('__import__')",
    "Integer('1' * 5000)",
    "10**10**10",
    "Pow(10, s0)",
    "s0**s1",
    "getattr(s0, 'x')",
    "eval",
    "s0[0]",
    "f'{s0}'",
    "(" * 500 + "s0" + ")" * 500,
    "+".join(["s0"] * 10_000),
    "Symbol('s0', positive=print)",
    "os.system",
    b"s0",
]


@pytest.mark.parametrize("text", WRITTEN_BY_TORCH)
def test_expressions_torch_writes_are_accepted(text):
    check_expression(text)


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_code_and_runaway_arithmetic_are_refused(text):
    with pytest.raises(UnsafeExpression):
        check_expression(text)


def test_accepted_expressions_evaluate_in_sympy_without_side_effects():
    sympy = pytest.importorskip("sympy")
    for text in WRITTEN_BY_TORCH[:10]:
        sympy.sympify(text)  # what torch.export.load does with them
