"""`bench perf data` figures: both opens of a written store measured in fresh processes."""

from __future__ import annotations

import json

from bench.perf.data import measure_data

PER_OPEN = ("open_s", "ms_per_batch", "open_peak_rss_mib", "peak_rss_mib")
FIGURES = (*(f"{o}_{key}" for o in ("first", "warm") for key in PER_OPEN), "store_bytes", "write_s")


def test_measuring_a_tiny_store_reports_every_figure_and_removes_the_store(tmp_path):
    root = tmp_path / "store"
    figures = measure_data(root, ["reach-v3", "push-v3"], episodes=4, batches=10)

    assert all(figures[key] > 0 for key in FIGURES), figures
    assert (figures["tasks"], figures["episodes_per_task"], figures["steps"]) == (2, 4, 4000)
    assert json.loads(json.dumps(figures)) == figures
    assert not root.exists()


def test_a_kept_store_is_measured_again_without_being_rewritten(tmp_path):
    root = tmp_path / "store"
    measure_data(root, ["reach-v3"], episodes=4, batches=1, keep=True)
    written = {path: path.stat().st_mtime_ns for path in root.glob("*/*.npy")}

    figures = measure_data(root, ["reach-v3"], episodes=4, batches=1)

    assert figures["write_s"] is None and figures["warm_open_s"] > 0
    assert {path: path.stat().st_mtime_ns for path in root.glob("*/*.npy")} == written
