"""`bench analyze`: harmony over training (beside its chance level) and a t-SNE of the final
masks, as PNG files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from bench import results
from bench.analyze import plot_harmony, plot_mask_tsne
from bench.cli import main
from bench.plots import harmony_curves
from bench.report_figures import evaluation_curves
from methods.harmodt_masks import pack_masks

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MT5 = ["basketball-v3", "bin-picking-v3", "button-press-topdown-v3", "button-press-v3",
       "button-press-wall-v3"]  # fmt: skip


def _write_events(run_dir: Path, events: list[dict]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    for event in events:
        results.append_metrics(run_dir, event)


def _mask_update(step: int) -> dict:
    return {
        "event": "mask_update", "step": step, "alpha": 3, "sparsity": [0.2] * 5,
        "inactive": [40] * 5, "changed": [6] * 5,
        "harmony": {"masked": 0.3 + step / 1000, "unmasked": 0.2}, "overlap": 0.67,
    }  # fmt: skip


def test_harmodt_run_gets_both_figures(tmp_path, capsys):
    run_dir = tmp_path / "run"
    _write_events(run_dir, [_mask_update(20), _mask_update(40)])
    masks = torch.rand(5, 200, generator=torch.Generator().manual_seed(0)) > 0.2
    state = {"task_masks": pack_masks(masks), "task_mask_size": 200}
    results.save_checkpoint(run_dir / results.CHECKPOINT, {"step": 40, "method": state})
    results.write_yaml(run_dir / results.CONFIG, {"config": {"tasks": {"name": "mt5"}}})

    assert main(["analyze", str(run_dir)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(run_dir / "harmony.png"), str(run_dir / "mask_tsne.png")]
    for name in ("harmony.png", "mask_tsne.png"):
        assert (run_dir / name).read_bytes().startswith(PNG_MAGIC)


def test_run_without_masks_gets_the_harmony_figure_only(tmp_path):
    run_dir = tmp_path / "run"
    events = [{"event": "harmony", "step": s, "harmony": 0.1} for s in (10, 20, 30)]
    _write_events(run_dir, [{"event": "train", "step": 10, "loss": 0.5}, *events])
    results.save_checkpoint(run_dir / results.CHECKPOINT, {"step": 30, "method": {}})
    assert main(["analyze", str(run_dir)]) == 0
    assert (run_dir / "harmony.png").read_bytes().startswith(PNG_MAGIC)
    assert not (run_dir / "mask_tsne.png").exists()


def test_nothing_to_analyze_is_a_one_line_error(tmp_path, capsys):
    run_dir = tmp_path / "run"
    _write_events(run_dir, [{"event": "train", "step": 10, "loss": 0.5}])
    assert main(["analyze", str(run_dir)]) == 2
    error = capsys.readouterr().err.strip()
    assert "nothing to analyze" in error and "harmony_every" in error and "\n" not in error
    assert main(["analyze", str(tmp_path / "missing")]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


def _series(events: list[dict]) -> dict[str, tuple[str, str]]:
    """The harmony panel's labelled lines: label -> (line style, colour)."""
    lines = plot_harmony(events).axes[0].get_lines()
    return {
        line.get_label(): (line.get_linestyle(), line.get_color())
        for line in lines
        if not line.get_label().startswith("_")  # the zero line
    }


def test_each_harmony_score_is_drawn_beside_its_chance_level():
    chance = {"harmony_chance": {"masked": 0.25, "unmasked": 0.2}}
    updates = [{**_mask_update(step), **chance} for step in (20, 40)]
    diagnostics = [
        {"event": "harmony", "step": step, "harmony": 0.3, "harmony_chance": 0.28}
        for step in (10, 30)
    ]
    series = _series(updates + diagnostics)
    scores = {label: drawn for label, drawn in series.items() if "chance" not in label}
    assert len(scores) == 3
    for label, (style, colour) in scores.items():
        assert style == "-" and series[f"{label}: chance level"] == ("--", colour)
    # Logged before the chance level existed: the scores alone.
    assert all(style == "-" for style, _ in _series([_mask_update(20)]).values())


def test_the_reports_harmony_curves_read_runs_with_and_without_chance_levels(tmp_path):
    runs = []
    for name, chance in (("old", {}), ("new", {"harmony_chance": {"masked": 0.25}})):
        run_dir = tmp_path / name
        _write_events(run_dir, [{**_mask_update(20), **chance}])
        cell = {"method": name, "variant": "default", "suite": "mt5", "data": "d", "seed": 0}
        runs.append({**cell, "run_dir": str(run_dir)})
    _, harmony = evaluation_curves(pd.DataFrame(runs), pd.DataFrame())  # as the report reads
    chances = harmony.set_index(["method", "series"])["harmony_chance"]
    assert chances[("new", "masked")] == 0.25
    assert chances.drop(("new", "masked")).isna().all()  # unmasked, and the old run's
    path = harmony_curves(harmony, tmp_path / "harmony.png", "harmony")
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_tsne_labels_each_task_mask_with_its_task():
    masks = torch.rand(5, 300, generator=torch.Generator().manual_seed(1)) > 0.2
    figure = plot_mask_tsne(masks.numpy(), MT5)
    axis = figure.axes[0]
    assert [text.get_text() for text in axis.texts] == MT5
    assert len(axis.collections[0].get_offsets()) == 5
