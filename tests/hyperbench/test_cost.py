from types import SimpleNamespace

from hyperbench import cost
from hyperbench.config import Timing


def job(device="cuda", **timing):
    return SimpleNamespace(device=device, timing=Timing(**timing))


def test_measuring_time_counts_warm_up_repetitions_and_a_graphs_three_setup_calls():
    assert cost.measuring_ms(10.0, job(warmup=2, min_reps=3)) == 50.0
    assert cost.measuring_ms(10.0, job(warmup=2, min_reps=3, cuda_graph=True)) == 80.0
    # on a CPU a call longer than the measuring target is warmed up once
    assert cost.measuring_ms(5000.0, job("cpu", warmup=2, min_reps=3, target_ms=1000)) == 20000.0
    assert cost.measuring_ms(10.0, job("cpu", warmup=0, min_reps=3)) == 40.0
