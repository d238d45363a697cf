"""The statistics behind the numbers in a report, small and exact: the Wilson score interval of a proportion
and McNemar's exact test on paired outcomes. Pure Python (no numpy, no scipy), so every writer can use them.

Intervals are written as ``[lo, hi]`` fractions, rounded to 6 decimals (a millionth of a point of accuracy is
far below what any table shows, and the JSON stays short).
"""

from __future__ import annotations

import math

# the two-sided 95% normal quantile, Phi^-1(0.975)
Z95 = 1.959963984540054
ALPHA = 0.05      # a paired difference is called significant at p < ALPHA
_DIGITS = 6


def wilson_interval(k: int, n: int, z: float = Z95) -> list[float] | None:
    """The Wilson score interval of a proportion ``k / n`` (Wilson 1927).

    Unlike the normal ("Wald") interval it stays inside [0, 1] and does not collapse to a point at 0% or
    100%: 500 of 500 correct gives [0.9924, 1.0], not [1.0, 1.0].

    Args:
        k: successes (e.g. samples still classified correctly), ``0 <= k <= n``.
        n: trials (samples evaluated).
        z: the normal quantile of the level (1.96 for 95%).

    Returns:
        ``[lo, hi]``, or ``None`` when ``n`` is 0 (there is no proportion).

    Raises:
        ValueError: ``k`` is outside ``[0, n]`` or ``n`` is negative.
    """
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"a proportion needs 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return None
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # the exact ends are 0 at k = 0 and 1 at k = n; float rounding must not move them off
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return [round(lo, _DIGITS), round(hi, _DIGITS)]


def proportion_interval(rate: float | None, n: int | None) -> list[float] | None:
    """:func:`wilson_interval` of a rate that was computed as ``k / n``.

    Args:
        rate: ``k / n`` (``k`` is recovered by rounding), or None.
        n: the number of trials, or None.

    Returns:
        ``[lo, hi]``, or ``None`` when either is missing, ``n`` is 0 or ``rate`` is not finite.
    """
    if rate is None or not n or not math.isfinite(rate):
        return None
    return wilson_interval(min(max(round(rate * n), 0), n), n)


def mcnemar_exact(b: int, c: int) -> float:
    """McNemar's exact test: the two-sided p-value that the discordant pairs split ``b`` : ``c`` by chance.

    On paired outcomes (the same samples, two runs), ``b`` counts the samples only the first run got right and
    ``c`` those only the second got right. Under the null hypothesis (no difference) each discordant pair is a
    fair coin, so ``min(b, c)`` follows Binomial(b + c, 1/2); the p-value doubles its lower tail (capped at 1).
    Computed with integers, exact for any count.

    Args:
        b, c: the two discordant counts, >= 0.

    Returns:
        The p-value in (0, 1]; 1.0 when there are no discordant pairs.

    Raises:
        ValueError: a negative count.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b}, {c}")
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2 ** n)  # int / int: correctly rounded, no overflow for large n


def fmt_interval(ci: list[float] | None, scale: float = 100.0, digits: int = 1) -> str:
    """An interval for a table: ``[88.7, 91.0]``.

    Args:
        ci: ``[lo, hi]`` or None.
        scale: what the ends are multiplied by (100: fractions shown as percent).
        digits: decimals shown.

    Returns:
        The text, or ``""`` when ``ci`` is not a pair of finite numbers.
    """
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return ""
    try:
        lo, hi = (float(v) * scale for v in ci)
    except (TypeError, ValueError):
        return ""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"
