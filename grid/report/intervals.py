"""95% intervals for every accuracy the report and ``er-grid query`` show, and the paired test
for method-vs-method differences on the shared evaluation examples.

- Over examples: the Wilson score interval of the robust examples over all examples behind a
  cell (Wilson 1927; it stays inside [0, 1] and keeps its coverage at accuracies near 0 or 1 and
  at small n, where the normal approximation does not).
- Over seeds, where a cell has several runs: the t interval of the per-run accuracies (Student's
  t with runs − 1 degrees of freedom): what retraining would move.
- Paired difference of two configurations on the same examples (same evaluation subset, and the
  same seed where both ran it): per seed, the difference of robust shares with its Wald interval
  from the discordant pairs (b − c)/n ± z·√(b + c − (b − c)²/n)/n; over several seeds, the t
  interval of the per-seed differences. A difference whose interval includes 0 is "not resolved".
"""

from __future__ import annotations

import math
from typing import Sequence

# Two-sided 95%.
LEVEL = 0.95
Z = 1.959963984540054  # the standard normal's 97.5% quantile


def wilson(successes: float, n: float) -> tuple[float, float]:
    """Wilson score interval of ``successes`` out of ``n`` at :data:`LEVEL`; (nan, nan) for n = 0."""
    if not n:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """The t interval of the mean of ``values`` at :data:`LEVEL`; (nan, nan) for fewer than two."""
    values = [float(v) for v in values if v == v]
    if len(values) < 2:
        return float("nan"), float("nan")
    from scipy.stats import t

    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    half = t.ppf(0.5 + LEVEL / 2, len(values) - 1) * sd / math.sqrt(len(values))
    return mean - half, mean + half


def paired_difference(a: set, b: set, shared: set) -> tuple[float, float, float]:
    """(difference, low, high) of the robust share of ``a`` minus ``b`` on ``shared`` examples:
    ``a`` and ``b`` are the robust example ids of the two configurations."""
    n = len(shared)
    if not n:
        return float("nan"), float("nan"), float("nan")
    only_a, only_b = len((a & shared) - b), len((b & shared) - a)
    d = (only_a - only_b) / n
    half = Z * math.sqrt(max(only_a + only_b - (only_a - only_b) ** 2 / n, 0.0)) / n
    return d, d - half, d + half


def resolved(low: float, high: float) -> bool:
    """The interval excludes 0 (a difference the measurement resolves)."""
    return low == low and high == high and (low > 0 or high < 0)


__all__ = ["LEVEL", "paired_difference", "resolved", "t_interval", "wilson"]
