"""A small, safe arithmetic evaluator for the `calculate` tool (no eval).

Parses with `ast` in expression mode and walks a whitelist of node types, with
limits on length, depth, exponent size and result magnitude so hostile input
("9**9**9", deep nesting, names, attribute access) gets a clear error.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from typing import Any

MAX_LEN = 200
MAX_DEPTH = 30
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 1e100


class CalcError(ValueError):
    pass


_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS: dict[str, Callable[..., float]] = {
    "sqrt": math.sqrt, "abs": abs, "round": round, "sin": math.sin, "cos": math.cos,
    "tan": math.tan, "log": math.log, "log10": math.log10, "exp": math.exp,
    "floor": math.floor, "ceil": math.ceil, "min": min, "max": max,
}
_CONSTS = {"pi": math.pi, "e": math.e}


def _normalise(expr: str) -> str:
    s = expr.strip().lower()
    for a, b in (("×", "*"), ("÷", "/"), ("−", "-"), ("^", "**")):
        s = s.replace(a, b)
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)  # 1,000 -> 1000
    return s.rstrip("=?. ")


def evaluate(expr: str) -> float | int:
    if not isinstance(expr, str) or not expr.strip():
        raise CalcError("empty expression")
    if len(expr) > MAX_LEN:
        raise CalcError(f"expression longer than {MAX_LEN} characters")
    depth = 0
    for ch in expr:
        depth += (ch == "(") - (ch == ")")
        if depth > MAX_DEPTH:
            raise CalcError("expression nested too deeply")
    try:
        tree = ast.parse(_normalise(expr), mode="eval")
    except SyntaxError:
        raise CalcError(f"cannot parse {expr!r}") from None
    value: float | int = _eval(tree.body, 0)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise CalcError("result is not a finite number")
        if value.is_integer() and abs(value) < 1e15:
            return int(value)
        return round(value, 10)
    return value


def _check(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise CalcError("only numbers are allowed")
    if abs(v) > MAX_MAGNITUDE:
        raise CalcError("result too large")
    return v


def _eval(node: ast.AST, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise CalcError("expression nested too deeply")
    if isinstance(node, ast.Constant):
        return _check(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left, depth + 1), _eval(node.right, depth + 1)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise CalcError(f"exponent larger than {MAX_EXPONENT}")
        if isinstance(node.op, ast.Pow) and abs(left) > 1 and abs(right) * math.log10(abs(left)) > 100:
            raise CalcError("result too large")
        try:
            return _check(_BINOPS[type(node.op)](left, right))
        except ZeroDivisionError:
            raise CalcError("division by zero") from None
        except OverflowError:
            raise CalcError("result too large") from None
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check(_UNARY[type(node.op)](_eval(node.operand, depth + 1)))
    if isinstance(node, ast.Name) and node.id in _CONSTS:
        return _CONSTS[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
        if node.keywords or len(node.args) > 4:
            raise CalcError(f"bad arguments to {node.func.id}")
        args = [_eval(a, depth + 1) for a in node.args]
        try:
            return _check(_FUNCS[node.func.id](*args))
        except (ValueError, TypeError, OverflowError) as e:
            raise CalcError(f"{node.func.id}: {e}") from None
    if isinstance(node, ast.Name):
        raise CalcError(f"unknown name {node.id!r}")
    raise CalcError(f"unsupported syntax: {type(node).__name__}")
