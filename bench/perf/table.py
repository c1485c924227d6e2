"""The table `bench perf` prints: the stage's figures, the official code's beside them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tabulate import tabulate

from bench.identity import flatten
from bench.perf.load import QUIET_CORES


def perf_table(result: Mapping[str, Any]) -> str:
    stage, figures, machine = result["stage"], result["figures"], result["machine"]
    ref = result.get("reference") or {}
    rows = [[_shown(value) for value in row] for row in _ROWS[stage](figures, ref)]
    headers = ["figure", "mtbench"] + (["official HarmoDT (same run)"] if ref else [])
    lines = [_title(result), tabulate(rows, headers=headers, disable_numparse=True)]
    breakdown = figures.get("breakdown_ms_per_step") or figures.get("parts_seconds")
    if breakdown:
        unit = "ms per step" if stage == "train" else "seconds"
        parts = [[name, value] for name, value in breakdown.items()]
        lines += ["", tabulate(parts, headers=["part", unit], floatfmt=".4g")]
        if stage == "train":  # its total is not the figure above: say why, where it shows
            lines.append(
                "parts: a second pass over later steps with a clock in the method; their total "
                "is not the ms per step above, which is timed without it"
            )
    stages = figures.get("stages")
    if stages:
        rows = [[name, f["first_step"], f["steps_in_run"], f["steps"], f["ms_per_step"],
                 f["steps_per_s"]] for name, f in stages.items()]  # fmt: skip
        headers = ["training stage", "first step", "steps in the run", "timed", "ms per step",
                   "steps/s"]  # fmt: skip
        lines += ["", "the figures above weigh each stage by its steps in the run:"]
        lines.append(tabulate(rows, headers=headers, floatfmt=".4g", intfmt=","))
    profile = figures.get("op_profile")
    if profile:
        per = profile["unit"]  # a training step or a policy call
        rows = [[o["op"], o["self_ms_per_unit"], 100 * o["share"], o["calls_per_unit"]]
                for o in profile["ops"]]  # fmt: skip
        headers = ["op (torch.profiler, self time)", f"ms per {per}", "% of ops", f"per {per}"]
        lines += ["", f"top ops over {profile['units']} profiled {per}s:"]
        lines.append(tabulate(rows, headers=headers, floatfmt=".4g"))
    section, key = _REFERENCE_PARTS.get(stage, ("", ""))
    reference_parts = (ref.get(section) or {}).get(key)
    if reference_parts:
        rows = [[name, value] for name, value in flatten(reference_parts).items()]
        lines += ["", tabulate(rows, headers=["official part", "value"], floatfmt=".4g")]
    native = machine.get("amx_bf16") or machine.get("avx512_bf16") or machine.get("cuda")
    if (result.get("config") or {}).get("precision") == "bf16" and not native:
        lines.append(
            "NOTE: this CPU has no bf16 instructions (neither AMX nor AVX512-BF16): bf16 is "
            "emulated here and slower than fp32"
        )
    for name, value in (result.get("ratios") or {}).items():
        lines.append(f"{name}: {value:.3g}")
    lines += _load_lines(result)
    return "\n".join(lines)


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def _title(result: Mapping[str, Any]) -> str:
    config = result.get("config") or {}
    machine = result["machine"]
    threads = result["figures"].get("threads", machine["torch_threads"])
    parts = [f"bench perf {result['stage']}"]
    if config:
        parts.append(
            f"{config['method']} {config['tasks']} scale={config['scale']} "
            f"precision={config['precision']} device={config['device']}"
        )
    parts.append(f"{machine['cpu']}, {machine['cores']} cores, {threads} threads")
    return " | ".join(parts)


def _train_rows(figures: Mapping[str, Any], ref: Mapping[str, Any]) -> list[list[Any]]:
    theirs = ref.get("train") or {}
    rows = [
        ["ms per step", figures["ms_per_step"], theirs.get("ms_per_step_mean")],
        ["ms per step, median", figures["ms_per_step_median"], theirs.get("ms_per_step_median")],
        ["steps/s", figures["steps_per_s"], theirs.get("steps_per_s")],
        ["parameters", figures["parameters"], (ref.get("params") or {}).get("count")],
        ["peak RSS (MiB)", figures["peak_rss_mib"], ref.get("peak_rss_mb")],
    ]
    return _trim(rows, ref)


def _mask_rows(figures: Mapping[str, Any], ref: Mapping[str, Any]) -> list[list[Any]]:
    theirs = ref.get("mask_update") or {}
    rows = [
        ["seconds per update", figures["seconds"], theirs.get("seconds")],
        ["tasks", figures["tasks"], theirs.get("tasks")],
        ["weights swapped per task", figures["swapped_per_task"], theirs.get("change_num")],
        ["maskable weights", figures["maskable_weights"], None],
        ["peak RSS (MiB)", figures["peak_rss_mib"], ref.get("peak_rss_mb")],
    ]
    return _trim(rows, ref)


def _eval_rows(figures: Mapping[str, Any], ref: Mapping[str, Any]) -> list[list[Any]]:
    theirs = ref.get("inference") or {}
    rows = [
        ["policy env-steps/s", figures["policy_env_steps_per_s"],
         theirs.get("eval_loop_env_steps_per_s")],
        ["policy ms per env-step", figures["policy_ms_per_env_step"],
         theirs.get("eval_loop_ms_per_env_step")],
        ["policy ms per call", figures["policy_ms_per_call"], theirs.get("get_action_ms_mean")],
        ["simulator ms per env-step", figures["simulator_ms_per_env_step"], None],
        ["env-steps/s, policy + simulator", figures["env_steps_per_s"], None],
        ["setup s per task (make, reset)", figures["setup_seconds_per_task"], None],
        ["episodes per call", figures["episodes_per_task"], 1],
    ]  # fmt: skip
    return _trim(rows, ref)


def _data_rows(figures: Mapping[str, Any], ref: Mapping[str, Any]) -> list[list[Any]]:
    return [[name, value] for name, value in figures.items() if not isinstance(value, dict)]


# Where the reference driver's JSON keeps each stage's breakdown.
_REFERENCE_PARTS = {"train": ("train", "breakdown"), "mask-update": ("mask_update", "breakdown_s")}
_ROWS = {"train": _train_rows, "mask-update": _mask_rows, "eval": _eval_rows, "data": _data_rows}


def _trim(rows: list[list[Any]], ref: Mapping[str, Any]) -> list[list[Any]]:
    return rows if ref else [row[:2] for row in rows]


def _load_lines(result: Mapping[str, Any]) -> list[str]:
    busy = [result["load_before"]["other_cores_busy"]]
    busy += [
        value["other_cores_busy"]
        for value in result["figures"].values()
        if isinstance(value, Mapping) and "other_cores_busy" in value
    ]
    worst = max(busy)
    line = f"other processes: up to {worst:.2f} cores busy while measuring"
    if worst > QUIET_CORES:
        line = (
            f"WARNING: {line} (quiet means <= {QUIET_CORES}): these figures are not a quiet "
            "machine's; compare only figures taken side by side"
        )
    return ["", line]
