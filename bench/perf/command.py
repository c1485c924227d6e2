"""`bench perf <stage> [overrides]`: one stage timed on synthetic data, a table and a JSON.

    bench perf train method=harmodt_f threads=2                  # the paper's configuration
    bench perf train method=harmodt_f precision=bf16 --reference ref.json
    bench perf mask-update method=harmodt_f
    bench perf eval method=prompt_dt
    bench perf data

The config is composed as `bench run` composes it (defaults: scale=paper, tasks=mt50), so a
figure is that of the run the same overrides would start. `--reference` takes the JSON that
../shared/harmodt-ref/bench.py writes, or that driver itself (then run first, in the same
command): each figure then gets its ratio to the official code's, measured in the same run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bench.atomic import write_json
from bench.errors import UserError
from bench.output_paths import check_output_file, check_output_folder
from bench.perf.load import QUIET_CORES, sample_load

if TYPE_CHECKING:
    from bench.settings import Settings

STAGES = ("train", "mask-update", "eval", "data")
DEFAULT_OVERRIDES = ("method=harmodt_f", "tasks=mt50", "scale=paper")
# Which parts of the reference driver each stage needs (its --skip takes the others).
_REFERENCE_PHASES = {"train": "train,breakdown", "mask-update": "mask", "eval": "infer"}
_ALL_REFERENCE_PHASES = "train,breakdown,mask,infer"


def run_perf(
    stage: str,
    overrides: Sequence[str],
    steps: int = 50,
    warmup: int = 5,
    episodes: int | None = None,
    eval_tasks: int = 2,
    eval_steps: int = 100,
    reference: str | None = None,
    reference_python: str | None = None,
    json_out: str | None = None,
    require_quiet: bool = False,
    store: str | None = None,
    op_steps: int = 0,
) -> str:
    """Measure `stage`, write its JSON and return the table to print."""
    if stage not in STAGES:
        raise UserError(f"unknown perf stage {stage!r}; choose one of: {', '.join(STAGES)}")
    counts = {"--steps": (steps, 1), "--eval-tasks": (eval_tasks, 1),
              "--eval-steps": (eval_steps, 1), "--warmup": (warmup, 0), "--ops": (op_steps, 0),
              "--episodes": (1 if episodes is None else episodes, 1)}  # fmt: skip
    for flag, (value, minimum) in counts.items():
        if value < minimum:
            raise UserError(f"{flag} must be >= {minimum}, got {value}")
    if op_steps and stage not in ("train", "eval"):
        raise UserError(
            f"--ops profiles training steps or policy calls: train or eval, not {stage}"
        )
    if reference and stage == "data":
        raise UserError("the official code has no data-store figure; drop --reference for data")
    settings = _settings(stage, overrides) if stage != "data" else None
    if settings is not None and stage == "eval" and eval_tasks > len(settings.suite.tasks):
        suite = settings.suite
        raise UserError(f"--eval-tasks {eval_tasks}: {suite.name} has {len(suite.tasks)} tasks")
    path = Path(json_out) if json_out else Path("runs/perf") / f"{stage}.json"
    check_output_file(path, "--json-out", (".json",))
    if store:
        check_output_folder(Path(store), "--store")
    before = sample_load()
    if require_quiet and not before.quiet:
        raise UserError(
            f"other processes keep {before.other_cores_busy:.2f} cores busy (quiet means "
            f"<= {QUIET_CORES}); stop them, or drop --require-quiet to measure anyway"
        )
    ref = _reference(reference, reference_python, stage, settings) if reference else None
    if settings is None:  # stage == "data": no method, no run config
        figures = _measure_data(episodes, store)
    else:
        figures = _measure_method(
            stage, settings, steps, warmup, episodes, eval_tasks, eval_steps, op_steps
        )
    result = {
        "stage": stage,
        "command": "bench perf " + " ".join([stage, *overrides]),
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_before": before.describe(),
        "figures": figures,
        **({"config": _summary(settings)} if settings else {}),
        **({"reference": ref, "ratios": ratios(stage, figures, ref)} if ref else {}),
    }
    write_json(path, result)
    from bench.perf.table import perf_table

    return perf_table(result) + f"\n\njson: {path}"


def _settings(stage: str, overrides: Sequence[str]) -> Settings:
    """The run these overrides describe, checked exactly as `bench run` checks it."""
    from bench.registry import get_method
    from bench.settings import load_settings

    settings = load_settings([*DEFAULT_OVERRIDES, *overrides])
    if stage == "mask-update" and not hasattr(get_method(settings.method_name).cls, "update_masks"):
        raise UserError(
            "mask-update measures HarmoDT's mask update: use a harmodt_* method "
            f"(got method={settings.method_name})"
        )
    return settings


def _summary(settings: Settings) -> dict[str, Any]:
    """What the figures are figures of."""
    return {
        "method": settings.method_name,
        "tasks": settings.suite.name,
        "scale": settings.scale,
        "precision": settings.precision,
        "device": settings.device,
        "threads": settings.threads,
        "method_options": dataclasses.asdict(settings.method_config),
    }


def _measure_method(
    stage: str,
    settings: Settings,
    steps: int,
    warmup: int,
    episodes: int | None,
    eval_tasks: int,
    eval_steps: int,
    op_steps: int = 0,
) -> dict[str, Any]:
    from bench.perf.synthetic import write_synthetic_store
    from bench.process_state import seed_everything, set_threads
    from bench.registry import build_for_run

    # As the runner starts a run (bench/runner.py), on synthetic data of the configured size.
    set_threads(settings.threads, settings.interop_threads)
    seed_everything(settings.seed)
    suite = settings.suite
    episodes = episodes or 20  # the reference driver's synthetic size
    with tempfile.TemporaryDirectory(prefix="mtbench-perf-") as folder:
        store = write_synthetic_store(Path(folder) / "store", suite.tasks, episodes)
        # The run's training tasks alone: the synthetic store has no unseen task's data.
        _, method = build_for_run(settings, store, dataclasses.replace(suite, test_tasks=()))
        figures: dict[str, Any] = {
            "parameters": method.num_parameters(),
            "threads": torch.get_num_threads(),
            "synthetic_episodes_per_task": episodes,
        }
        if stage == "train":
            from bench.perf.train import measure_stages

            stages = settings.method_config.training_stages(settings.train.steps)
            figures.update(measure_stages(method, stages, steps, warmup, op_steps))
        elif stage == "mask-update":
            from bench.perf.train import measure_mask_update

            figures.update(measure_mask_update(method))
        else:
            from bench.perf.evaluation import measure_eval

            tasks = suite.tasks[:eval_tasks]
            figures.update(
                measure_eval(method, tasks, settings.eval.episodes, eval_steps, op_steps)
            )
    return figures


def _measure_data(episodes: int | None, store: str | None) -> dict[str, Any]:
    from bench.perf.data import measure_data
    from bench.suites import get_suite

    # 100M transitions by default (4000 episodes x 500 steps x 50 tasks, ~18 GB on disk): the
    # size the performance issue sets for MT50 near-optimal.
    episodes = episodes or 4000
    if store:  # kept, and reused by the next measurement
        figures = measure_data(Path(store), get_suite("mt50").tasks, episodes, keep=True)
        return {**figures, "store": store}
    with tempfile.TemporaryDirectory(prefix="mtbench-perf-store-") as folder:
        return measure_data(Path(folder) / "store", get_suite("mt50").tasks, episodes)


def _reference(
    reference: str, python: str | None, stage: str, settings: Settings | None
) -> dict[str, Any]:
    """The reference figures: read from a JSON, or measured now by running the driver."""
    path = Path(reference).expanduser()
    if not path.is_file():
        raise UserError(f"--reference {reference}: no such file (a JSON or the driver bench.py)")
    if path.suffix == ".json":
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise UserError(f"--reference {reference} is not valid JSON ({error.msg})") from None
    python = python or os.path.join(
        os.environ.get("REF_VENV", os.path.join(tempfile.gettempdir(), "harmodt-ref-venv")),
        "bin",
        "python",
    )
    if not Path(python).exists():
        raise UserError(
            f"no python for the reference driver at {python}; run its setup.sh or pass "
            "--reference-python"
        )
    needed = set(_REFERENCE_PHASES[stage].split(","))
    skip = ",".join(p for p in _ALL_REFERENCE_PHASES.split(",") if p not in needed)
    threads = (settings.threads if settings else None) or 0
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "reference.json"
        command = [python, str(path), "--threads", str(threads), "--json-out", str(out)]
        command += ["--skip", skip] if skip else []
        print("reference: " + " ".join(command), flush=True)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"the reference driver failed ({done.returncode}): {tail[0]}")
        return json.loads(out.read_text())


def ratios(stage: str, figures: Mapping[str, Any], ref: Mapping[str, Any]) -> dict[str, float]:
    """Ours against the official code's, as speed-ups (> 1: we are faster), same run."""
    found: dict[str, float] = {}
    if stage == "train" and "train" in ref:
        found["train_speedup"] = ref["train"]["ms_per_step_mean"] / figures["ms_per_step"]
    if stage == "mask-update" and "mask_update" in ref:
        found["mask_update_time_ratio"] = figures["seconds"] / ref["mask_update"]["seconds"]
    if stage == "eval" and "inference" in ref:
        ours = figures["policy_env_steps_per_s"]
        found["policy_env_steps_speedup"] = ours / ref["inference"]["eval_loop_env_steps_per_s"]
    return {name: round(value, 3) for name, value in found.items()}


def machine() -> dict[str, Any]:
    """What a figure was measured on."""
    model = platform.processor()
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "amx_bf16": "amx_bf16" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "loadavg": [round(value, 2) for value in os.getloadavg()],
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
