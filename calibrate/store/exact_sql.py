"""Exact numbers in portable SQL (the subset DuckDB and Spark SQL share).

The sweep sums money, scores and latencies as integers (nano-USD, micro-score, µs), each the
round-half-to-even of the float times a power of ten, as numpy's `rint` makes them; `rint` writes
that rounding once for every aggregate query, so sums are exact and do not depend on the engine's
summation order. `double` writes a float literal that both engines read as exactly that DOUBLE;
`finite` tests a DOUBLE for being neither ±inf nor NaN. Sums of squares go through DECIMAL(38,0)
(DuckDB and Spark both keep 38 digits, far above 10⁹ requests × (10¹⁰ nano-USD)²).
"""

from __future__ import annotations

import math

MAX_DOUBLE = "1.7976931348623157e308"


def double(value: float) -> str:
    """A DOUBLE literal parsing back to `value` exactly (an exponent makes it DOUBLE, not DECIMAL)."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"no SQL literal for {value}")
    text = repr(value)
    return text if "e" in text else f"{text}e0"


def finite(expr: str) -> str:
    """TRUE iff the DOUBLE `expr` is finite (NaN, ±inf and NULL are not)."""
    return f"({expr} BETWEEN -{MAX_DOUBLE} AND {MAX_DOUBLE})"


def rint(expr: str) -> str:
    """numpy's rint (round half to even) of a DOUBLE expression, as BIGINT."""
    x = f"({expr})"
    return (
        f"CAST(CASE WHEN {x} - FLOOR({x}) = 0.5"
        f" THEN FLOOR({x}) + ABS(CAST(FLOOR({x}) AS BIGINT) % 2)"
        f" ELSE ROUND({x}) END AS BIGINT)"
    )


def nano_usd(cost_usd: str) -> str:
    """rint(cost_usd · 1e9): whole nano-USD."""
    return rint(f"{cost_usd} * {double(1e9)}")


def latency_us(latency_ms: str) -> str:
    """rint(latency_ms · 1000): whole µs."""
    return rint(f"{latency_ms} * {double(1000.0)}")


def micro_score(label: str) -> str:
    """rint(label · 1e6): whole micro-score (NULL stays NULL)."""
    return rint(f"{label} * {double(1e6)}")


def exact_sum_sql(expr: str) -> str:
    """SUM of an integer expression, exact (DECIMAL(38,0)), as text: every runner hands text
    back unchanged (DuckDB's fetchnumpy turns a DECIMAL into a float64); `int()` reads it."""
    return f"CAST(SUM(CAST({expr} AS DECIMAL(38,0))) AS STRING)"


def exact_product_sum_sql(a: str, b: str) -> str:
    """SUM(a·b) of two integer expressions, exact (DECIMAL(38,0)), as text (`exact_sum_sql`)."""
    return f"CAST(SUM(CAST({a} AS DECIMAL(38,0)) * CAST({b} AS DECIMAL(38,0))) AS STRING)"
