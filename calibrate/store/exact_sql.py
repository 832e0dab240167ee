"""Exact numbers in portable SQL (the common subset of DuckDB and Spark SQL): numpy's rint,
nano-USD, double literals that round-trip, and integer sums that cannot overflow.

Aggregate SQL sums money as integers (nano-USD = rint(cost_usd·1e9)), so its sums are exact and
do not depend on the engine's summation order; sums of squares go through DECIMAL(38,0) (DuckDB
and Spark both keep 38 digits, far above 10⁹ requests × (10¹⁰ nano-USD)²).
"""

from __future__ import annotations

import math

NANO_USD = "1e9"


def rint_sql(expr: str) -> str:
    """numpy's rint of a DOUBLE expression (round half to even), as a DOUBLE: ROUND rounds
    halves away from zero in both engines, so exact halves are decided apart."""
    x = f"({expr})"
    floor = f"FLOOR{x}"
    odd = f"ABS(CAST({floor} AS BIGINT) % 2)"
    return f"(CASE WHEN {x} - {floor} = 0.5e0 THEN {floor} + {odd} ELSE ROUND{x} END)"


def nano_usd_sql(cost_usd: str) -> str:
    """rint(cost_usd·1e9) as a BIGINT (`grid.quantize_usd`)."""
    return f"CAST({rint_sql(f'{cost_usd} * {NANO_USD}')} AS BIGINT)"


def double_sql(value: float) -> str:
    """A finite float as a DOUBLE literal that parses back to the same float in both engines
    (a plain `0.75` is a DECIMAL literal in both)."""
    if not math.isfinite(value):
        raise ValueError(f"no portable SQL literal for {value!r}")
    text = repr(float(value))
    return text if "e" in text else f"{text}e0"


def exact_sum_sql(expr: str) -> str:
    """SUM of an integer expression, exact (DECIMAL(38,0)), as text: every runner hands text
    back unchanged (DuckDB's fetchnumpy turns a DECIMAL into a float64); `int()` reads it."""
    return f"CAST(SUM(CAST({expr} AS DECIMAL(38,0))) AS STRING)"


def exact_product_sum_sql(a: str, b: str) -> str:
    """SUM(a·b) of two integer expressions, exact (DECIMAL(38,0)), as text (`exact_sum_sql`)."""
    return f"CAST(SUM(CAST({a} AS DECIMAL(38,0)) * CAST({b} AS DECIMAL(38,0))) AS STRING)"
