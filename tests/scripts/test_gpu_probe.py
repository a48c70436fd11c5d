"""The pure helpers of scripts/gpu_probe.py (its parts need a GPU; these do not)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import gpu_probe  # noqa: E402


def test_intervals_union_counts_overlaps_once():
    assert gpu_probe._intervals_union([]) == 0
    assert gpu_probe._intervals_union([(5, 9), (0, 2), (1, 3), (8, 10), (6, 7)]) == 3 + 5


def test_replays_split_at_markers_and_drop_each_flush():
    kernels = [(50, 60, "at::fill"), (40, 41, "at::cuda::spin_kernel"), (61, 70, "k1"), (0, 1, "before"),
               (100, 101, "spin_kernel"), (102, 110, "at::fill"), (111, 120, "k1"), (118, 125, "k2"),
               (200, 201, "spin_kernel"), (202, 210, "at::fill")]
    assert gpu_probe._replays(kernels) == [[(61, 70, "k1")], [(111, 120, "k1"), (118, 125, "k2")]]
