"""bench.run_result: the typed result.json, written by the runner and read by every report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main
from bench.errors import UserError
from bench.run_result import DamagedResult, RunResult, read_result

REPO = Path(__file__).resolve().parents[2]
COMMITTED = sorted((REPO / "reports").glob("*/runs/**/result.json"))


def _written(payload: dict) -> str:
    """The bytes bench.atomic.write_json gives a result."""
    return json.dumps(payload, indent=2) + "\n"


@pytest.fixture(scope="module")
def real_result(smoke_data_root, tmp_path_factory) -> Path:
    """The result.json of a real smoke run (HarmoDT: its best-of and mask updates included)."""
    runs = tmp_path_factory.mktemp("runs")
    args = ["run", "method=harmodt_r", "tasks=mt5", "scale=smoke", "progress=false"]
    assert main([*args, f"data.root={smoke_data_root}", f"run.root={runs}"]) == 0
    return next(runs.rglob("result.json"))


def test_a_real_result_round_trips_to_the_same_bytes(real_result: Path) -> None:
    text = real_result.read_text()
    result = read_result(real_result.parent)

    assert _written(result.to_json()) == text
    assert result.method == "harmodt_r" and result.suite == "mt5"
    assert result.protocol.checkpoint.startswith("final (step ")
    assert result.best_of_evaluations is not None and result.best_of_evaluations.evaluations >= 1
    assert result.dataset_verified is True and result.data.generator is not None
    assert set(result.per_task) == set(result.tasks)
    assert all(0 <= score.success_rate <= 1 for score in result.per_task.values())


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(REPO / "reports")))
def test_every_committed_result_reads_and_writes_back_unchanged(path: Path) -> None:
    """Older layouts (no best_of_evaluations, no data.generator, per-task keys in another
    order) read, and write back as the same bytes."""
    result = read_result(path)

    assert _written(result.to_json()) == path.read_text()
    assert result.extra == {}  # every key of every committed result is a known one


def test_committed_results_exist() -> None:
    assert COMMITTED, "reports/*/runs holds no result.json"


def test_an_older_layout_leaves_the_newer_parts_none(real_result: Path) -> None:
    payload = json.loads(real_result.read_text())
    for key in ("best_of_evaluations", "dataset_verified", "dataset_store", "steps"):
        del payload[key]
    del payload["data"]["generator"]

    result = RunResult.from_json(payload)

    assert result.best_of_evaluations is None and result.dataset_verified is None
    assert result.data.generator is None and result.store_hash is None
    assert result.to_json() == payload and list(result.to_json()) == list(payload)


def test_a_meta_rl_result_keeps_its_test_tasks_and_splits(real_result: Path) -> None:
    payload = json.loads(real_result.read_text())
    tasks = list(payload["per_task"])
    head = {key: payload.pop(key) for key in ("method", "suite", "tasks")}
    payload = {**head, "test_tasks": tasks[-1:], **payload}  # where the runner writes it
    payload["success_rate"] = None
    for task, scores in payload["per_task"].items():
        scores["success_rate"] = None
        scores["split"] = "test" if task in payload["test_tasks"] else "train"

    result = RunResult.from_json(payload)

    assert result.success_rate is None and result.test_tasks == tuple(tasks[-1:])
    assert result.per_task[tasks[-1]].split == "test"
    assert _written(result.to_json()) == _written(payload)


@pytest.mark.parametrize("missing", ["method", "per_task", "protocol", "success_rate"])
def test_a_result_without_a_needed_key_names_it(real_result: Path, missing: str) -> None:
    payload = json.loads(real_result.read_text())
    del payload[missing]

    with pytest.raises(DamagedResult, match=f"no '{missing}'"):
        RunResult.from_json(payload)


def test_read_result_names_the_file_and_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "result.json").write_text("{}")
    with pytest.raises(UserError, match=r"result.json: not a run's result \(no 'method'\)"):
        read_result(tmp_path)

    (tmp_path / "result.json").write_text('{"method": ')
    with pytest.raises(UserError, match=r"result.json: cannot read it"):
        read_result(tmp_path / "result.json")

    (tmp_path / "result.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="not a run's result"):
        read_result(tmp_path)
