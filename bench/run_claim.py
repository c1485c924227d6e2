"""Whose a run directory is: a run claims it before anything is written, and never clears
another config's progress (a checkpoint or a result) unless `run.restart=true` says so."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench import results
from bench.config import as_override, hydra_quoted
from bench.errors import UserError, damage_reason
from bench.identity import identity_values
from bench.registry import earlier_values
from bench.settings import Settings


def check_claimable(settings: Settings) -> None:
    """Refuse, before anything runs, a run directory that holds another config's progress."""
    _refuse_progress(settings, _config_differences(settings))


@dataclass(frozen=True)
class Difference:
    key: str
    saved: Any
    new: Any
    earlier: bool  # the saved config lacks the key: `saved` is its option's `earlier` value

    def __str__(self) -> str:
        added = ", saved before the option existed" if self.earlier else ""
        return f"{self.key} ({self.saved!r}{added} -> {self.new!r})"


def _refuse_progress(settings: Settings, differences: list[Difference]) -> None:
    # A result is progress too: a finished run kept without its checkpoint (the committed
    # reports' runs) must never be cleared for another config.
    kept = (results.CHECKPOINT, results.RESULT)
    progress = any((settings.run_dir / name).exists() for name in kept)
    if differences and not settings.run.restart and progress:
        # Options added since the run was made, and nothing else: passing their old values
        # names another run directory (bench.identity), so this one is resumed by naming it.
        # Quoted twice: for Hydra (a path's spaces or commas), then for the shell.
        resume = ""
        if all(d.earlier for d in differences):
            as_made = [f"run.dir={hydra_quoted(str(settings.run_dir))}"]
            as_made += [as_override(d.key, d.saved) for d in differences]
            resume = f"; `{shlex.join(as_made)}` added to the command resumes it as made"
        raise UserError(
            f"{settings.run_dir} holds a run of a different config with progress: "
            f"{_describe(differences)}; run.restart=true discards it and starts over (or undo "
            f"the change to resume it{resume})"
        )


def damaged(path: Path, error: Exception) -> UserError:
    return UserError(f"{path} is damaged ({damage_reason(error)}); {results.RESTART}")


def _config_differences(settings: Settings) -> list[Difference]:
    config_path = settings.run_dir / results.CONFIG
    if not config_path.exists():
        return []
    return _differences_from_saved(config_path, settings.config)


def _describe(differences: list[Difference]) -> str:
    return ", ".join(str(d) for d in differences[:3])


def _differences_from_saved(config_path: Path, config: dict) -> list[Difference]:
    """The result-affecting values in which the config saved at `config_path` (a run's
    config.yaml) differs from `config`, by key."""
    try:
        saved_config = yaml.safe_load(config_path.read_text())["config"]
        earlier = earlier_values(saved_config)
        saved = earlier | identity_values(saved_config)
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as error:
        raise damaged(config_path, error) from None
    new = identity_values(config)
    # Any other key only one side has comes from another code version's config, and one that
    # changes a result came with an `earlier` value: not a difference.
    differing = sorted(k for k in set(saved) & set(new) if saved[k] != new[k])
    return [Difference(k, saved[k], new[k], k in earlier) for k in differing]


def config_differences(config_path: Path, config: dict) -> str | None:
    """`_differences_from_saved` in words (the first three); None when the configs agree."""
    return _describe(_differences_from_saved(config_path, config)) or None


def resume_advice(restart: bool) -> str:
    """What to run after a stop: with run.restart=true the same command would start over."""
    if restart:
        return "run the same command without run.restart=true to resume"
    return "run the same command to resume"


def claim_directory(settings: Settings, run_dir: Path, say: Callable[[str], None]) -> None:
    """Make `run_dir` this config's: start over on request, replace a failed start, refuse a
    different config that made progress."""
    if settings.run.restart and any(p.name != ".lock" for p in run_dir.iterdir()):
        results.clear_run(run_dir)
        say(f"run.restart=true: cleared {run_dir}")
        return
    differences = _config_differences(settings)
    _refuse_progress(settings, differences)
    if differences:
        results.clear_run(run_dir)
        say(f"replacing the run in {run_dir}, which made no progress: {_describe(differences)}")
