"""What every MT30 probe starts from: one sweep run's trained method and its evaluation goals.

The probes run as scripts (`python reports/mt30-small/probes/<probe>.py`), so this module sits
beside them on the import path.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.conditioning import trained_method
from bench.evaluate import EvalProtocol
from bench.settings import Settings, load_settings


def sweep_run(
    method_name: str, seed: int, run_root: str, data_root: str, episodes: int
) -> tuple[Settings, Any, EvalProtocol]:
    """(settings, the method at the run's checkpoint, `episodes` per task on the seed's goals:
    those of the run's own evaluations, fewer of them), on one thread as the sweep runs."""
    torch.set_num_threads(1)
    overrides = [f"method={method_name}", "tasks=mt30", "scale=small", f"seed={seed}"]
    settings = load_settings([*overrides, f"run.root={run_root}", f"data.root={data_root}"])
    method = trained_method(settings.run_dir, [f"data.root={data_root}"])
    protocol = EvalProtocol(episodes, settings.eval.goal_pool_seed_offset + seed, seed)
    return settings, method, protocol
