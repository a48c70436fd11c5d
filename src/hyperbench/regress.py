"""The noise-aware verdict: did one (method, configuration) get slower, faster, or neither?

A change counts only when it exceeds BOTH a relative threshold AND the measurement noise:
- with every repetition's time on both sides: a bootstrap confidence interval (99%) of the ratio
  of medians, candidate / baseline, must lie wholly beyond 1 ± threshold;
- with only quantiles (p20/p80 in the store, q1/q3 from pytest-benchmark): the ratio of medians
  must exceed the threshold and the two quantile ranges must not overlap.
Error metrics are deterministic for a seed, so there the noise is rounding: a change must exceed a
relative threshold and an absolute floor (exact kernels' 1e-8 vs 2e-8 is no regression).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

REGRESSION, IMPROVEMENT, SAME = "regression", "improvement", "same"
THRESHOLD = 0.05
CONFIDENCE = 0.99
RESAMPLES = 2000
ERR_FLOOR = 1e-3   # spec_err is in units of the operator bound; a thousandth of it is rounding


@dataclass(frozen=True)
class Timing:
    """One side's measurements. ``low``/``high``: a lower and an upper quantile (p20/p80 or
    q1/q3); missing, the spread is unknown and only the threshold applies. ``samples``: every
    repetition, when recorded."""
    median: float
    low: float | None = None
    high: float | None = None
    reps: int | None = None
    samples: tuple[float, ...] | None = None

    @classmethod
    def of_samples(cls, samples: Sequence[float]) -> Timing:
        s = np.asarray(samples, dtype=float)
        return cls(float(np.median(s)), float(np.quantile(s, 0.2)), float(np.quantile(s, 0.8)),
                   len(s), tuple(s.tolist()))

    def scaled(self, factor: float) -> Timing:
        """Every time multiplied by factor (the spread and samples too)."""
        def times(x):
            return None if x is None else x * factor
        return Timing(self.median * factor, times(self.low), times(self.high), self.reps,
                      None if self.samples is None else tuple(x * factor for x in self.samples))


@dataclass(frozen=True)
class Verdict:
    verdict: str
    ratio: float                  # candidate / baseline (median time, or error)
    interval: tuple[float, float] | None = None   # the ratio's confidence interval (bootstrap only)
    basis: str = ""               # what decided it: "bootstrap", "quantiles", "threshold", "error"


def _beyond(ratio_low: float, ratio_high: float, threshold: float) -> str:
    if ratio_low > 1 + threshold:
        return REGRESSION
    if ratio_high < 1 - threshold:
        return IMPROVEMENT
    return SAME


def _bootstrap(base: np.ndarray, cand: np.ndarray, threshold: float, seed: int) -> Verdict:
    # seeded, so the same data always gets the same verdict
    rng = np.random.default_rng(seed)
    b = np.median(rng.choice(base, size=(RESAMPLES, base.size)), axis=1)
    c = np.median(rng.choice(cand, size=(RESAMPLES, cand.size)), axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(c / b, [tail, 100 - tail])
    ratio = float(np.median(cand) / np.median(base))
    return Verdict(_beyond(low, high, threshold), ratio, (float(low), float(high)), "bootstrap")


def _spread(t: Timing) -> tuple[float, float]:
    return (t.median if t.low is None else t.low, t.median if t.high is None else t.high)


def _quantiles(base: Timing, cand: Timing, threshold: float) -> Verdict:
    ratio = cand.median / base.median
    (b_low, b_high), (c_low, c_high) = _spread(base), _spread(cand)
    verdict = _beyond(ratio, ratio, threshold)
    apart = (verdict == REGRESSION and c_low > b_high) or (verdict == IMPROVEMENT and c_high < b_low)
    known = None not in (base.low, base.high, cand.low, cand.high)
    return Verdict(verdict if apart else SAME, ratio, None, "quantiles" if known else "threshold")


def compare_times(base: Timing, cand: Timing, threshold: float = THRESHOLD, seed: int = 0) -> Verdict:
    """Verdict on candidate against baseline times (lower is better)."""
    if not (base.median > 0 and cand.median > 0):
        raise ValueError(f"medians must be positive, got {base.median!r} and {cand.median!r}")
    if base.samples and cand.samples:
        return _bootstrap(np.asarray(base.samples, float), np.asarray(cand.samples, float), threshold, seed)
    return _quantiles(base, cand, threshold)


def compare_errors(base: float, cand: float, threshold: float = THRESHOLD,
                   floor: float = ERR_FLOOR) -> Verdict | None:
    """Verdict on an error metric (higher is worse); None where either side has none."""
    if base is None or cand is None or not (math.isfinite(base) and math.isfinite(cand)):
        return None
    ratio = cand / base if base > 0 else (math.inf if cand > 0 else 1.0)
    if abs(cand - base) <= floor:
        return Verdict(SAME, ratio, None, "error")
    return Verdict(_beyond(ratio, ratio, threshold), ratio, None, "error")
