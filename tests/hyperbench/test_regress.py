"""regress.py: a change counts only when it beats both the threshold and the noise."""

from pathlib import Path

import numpy as np
import pytest

from hyperbench import store
from hyperbench.compare import row_timing
from hyperbench.regress import IMPROVEMENT, REGRESSION, SAME, Timing, compare_errors, compare_times

RESULTS = Path(__file__).resolve().parents[2] / "results"
NEW, OLD = "26aba89", "f317cca"


def real_rows(sha: str, **where) -> list:
    df = store.read(RESULTS, where={"status": "ok", **where})
    return [r for _, r in df.iterrows() if r["git_sha"].startswith(sha)]


def scaled(t: Timing, factor: float) -> Timing:
    samples = tuple(x * factor for x in t.samples) if t.samples else None
    return Timing(t.median * factor, t.low * factor, t.high * factor, t.reps, samples)


def samples_like(t: Timing) -> Timing:
    """Repetitions whose p20 / median / p80 are a real row's (the committed rows predate samples)."""
    u = (np.arange(t.reps) + 0.5) / t.reps
    return Timing.of_samples(np.interp(u, [0.0, 0.2, 0.5, 0.8, 1.0],
                                       [t.low * 0.99, t.low, t.median, t.high, t.high * 1.01]))


@pytest.fixture(scope="module")
def gpu_timings() -> list[Timing]:
    rows = real_rows(NEW, seq_len=131072)
    assert len(rows) == 12, "the committed H200 results at 26aba89 changed"
    return [row_timing(r) for r in rows]


@pytest.mark.parametrize("factor, expected", [(1.10, REGRESSION), (1.01, SAME), (0.90, IMPROVEMENT), (0.99, SAME)])
def test_planted_change_on_real_quantiles(gpu_timings, factor, expected):
    verdicts = [compare_times(t, scaled(t, factor)).verdict for t in gpu_timings]
    assert verdicts == [expected] * len(verdicts)


@pytest.mark.parametrize("factor, expected", [(1.10, REGRESSION), (1.01, SAME), (0.90, IMPROVEMENT)])
def test_planted_change_on_samples(gpu_timings, factor, expected):
    # reps >= 7 keeps the bootstrap of a median informative
    for t in (samples_like(t) for t in gpu_timings if t.reps >= 7):
        v = compare_times(t, scaled(t, factor))
        assert v.basis == "bootstrap" and v.verdict == expected, (t.median, v)


def test_real_noise_wider_than_the_change_is_not_flagged():
    # sdpa_flash fwd+bwd at n=1024 on the H200: p20-p80 spans 0.26-0.43 ms around 0.32 ms
    (row,) = real_rows(OLD, method="sdpa_flash", seq_len=1024, mode="fwd+bwd", causal=False)
    t = row_timing(row)
    assert compare_times(t, scaled(t, 1.10)).verdict == SAME
    assert compare_times(t, scaled(t, 1.70)).verdict == REGRESSION   # ranges apart


def test_sample_noise_wider_than_the_change_is_not_flagged():
    rng = np.random.default_rng(1)
    base = Timing.of_samples(rng.lognormal(0.0, 0.3, 15))
    cand = Timing.of_samples(rng.lognormal(np.log(1.10), 0.3, 15))
    assert compare_times(base, cand).verdict == SAME


def test_significant_but_below_threshold_is_not_flagged():
    rng = np.random.default_rng(2)
    base = Timing.of_samples(rng.normal(10.0, 0.01, 100))
    cand = Timing.of_samples(rng.normal(10.3, 0.01, 100))   # +3%, far outside the noise
    v = compare_times(base, cand)
    assert v.verdict == SAME and v.interval[0] > 1.02
    assert compare_times(base, cand, threshold=0.02).verdict == REGRESSION


def test_bootstrap_is_deterministic():
    rng = np.random.default_rng(3)
    base, cand = (Timing.of_samples(rng.normal(m, 0.5, 40)) for m in (10.0, 11.0))
    assert compare_times(base, cand) == compare_times(base, cand)


def test_without_spread_only_the_threshold_applies():
    assert compare_times(Timing(1.0), Timing(1.2)).verdict == REGRESSION
    assert compare_times(Timing(1.0), Timing(1.2)).basis == "threshold"
    with pytest.raises(ValueError):
        compare_times(Timing(0.0), Timing(1.0))


@pytest.mark.parametrize("base, cand, expected", [
    (1e-8, 2e-8, SAME),          # exact kernels' rounding: doubled but far under the floor
    (1.5e-5, 9e-5, SAME),
    (0.10, 0.12, REGRESSION),
    (0.12, 0.10, IMPROVEMENT),
    (0.10, 0.102, SAME),         # above the floor, under the threshold
    (0.0, 0.01, REGRESSION),
])
def test_error_verdicts(base, cand, expected):
    assert compare_errors(base, cand).verdict == expected


def test_error_verdict_on_real_rows():
    old = {r["config_hash"]: r["spec_err"] for r in real_rows(OLD, method="hyper", seq_len=131072, mode="fwd")}
    new = real_rows(NEW, method="hyper", seq_len=131072, mode="fwd")
    assert new and all(compare_errors(old[r["config_hash"]], r["spec_err"]).verdict == SAME for r in new)
    assert all(compare_errors(old[r["config_hash"]], r["spec_err"] * 1.2).verdict == REGRESSION for r in new)
    assert compare_errors(None, 0.1) is None and compare_errors(0.1, float("nan")) is None


def test_a_timing_scales_every_time_it_holds():
    t = Timing.of_samples([1.0, 2.0, 3.0, 4.0, 5.0]).scaled(2.0)
    assert (t.median, t.reps, t.samples) == (6.0, 5, (2.0, 4.0, 6.0, 8.0, 10.0))
    assert t.low == pytest.approx(2 * 1.8) and t.high == pytest.approx(2 * 4.2)
    bare = Timing(3.0).scaled(0.5)
    assert (bare.median, bare.low, bare.high, bare.samples) == (1.5, None, None, None)
