"""Bounded-memory latency statistics: percentiles within the stated relative error, exact count/mean/max."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sonolens.pipeline.messages import Timings
from sonolens.pipeline.stats import LatencyHistogram
from sonolens.pipeline.telemetry import FrameRow, Telemetry


@pytest.mark.parametrize("dist", ["lognormal", "uniform", "bimodal"])
def test_histogram_percentiles_within_half_a_percent(dist):
    rng = np.random.default_rng(0)
    x = {"lognormal": rng.lognormal(1.0, 0.8, 50_000),
         "uniform": rng.uniform(0.2, 40.0, 50_000),
         "bimodal": np.concatenate([rng.normal(2.0, 0.1, 40_000), rng.normal(30.0, 2.0, 10_000)])}[dist]
    h = LatencyHistogram()
    for v in x:
        h.add(float(v))
    s = h.summary()
    for q in (50, 95, 99):
        exact = float(np.percentile(x, q, method="inverted_cdf"))
        assert abs(s[f"p{q}"] - exact) <= 0.005 * exact + 1e-12, (q, s[f"p{q}"], exact)
    assert s["max"] == float(x.max()) and math.isclose(s["mean"], float(x.mean()), rel_tol=1e-9)
    assert h.n == x.size


def test_histogram_edges_and_empty():
    h = LatencyHistogram()
    assert math.isnan(h.summary()["p50"])
    h.add(0.0)
    h.add(-0.001)  # clock granularity can give a tiny negative stage
    h.add(1e9)
    assert h.n == 3 and h.min == -0.001 and h.max == 1e9
    assert h.percentile(100) == 1e9 and -0.001 <= h.percentile(1) <= 1e-3  # first bucket: up to lo_ms


def test_telemetry_memory_does_not_grow_with_frames():
    tel = Telemetry(window=50)
    for i in range(20_000):
        t0 = i * 33_000_000
        tel.record(FrameRow(index=i, timings=Timings(t_captured_ns=t0, t_enqueued_ns=t0 + 1000,
                                                     t_dequeued_ns=t0 + 2_000_000, t_preprocessed_ns=t0 + 3_000_000,
                                                     t_inferred_ns=t0 + 4_000_000, t_delivered_ns=t0 + 5_000_000)))
    assert len(tel._window) == 50
    assert all(h.counts.size == LatencyHistogram().counts.size for h in tel._hist.values())
    s = tel.summary()
    assert s["frames_processed"] == 20_000
    assert s["fps_processed"] == pytest.approx(1e9 / 33_000_000)
    assert s["latency_ms"]["capture_to_result"]["max"] == pytest.approx(5.0)
    assert abs(s["latency_ms"]["capture_to_result"]["p50"] - 5.0) <= 0.025
