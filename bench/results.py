"""The run directory contract and the atomic writers behind it.

    <run_dir>/config.yaml     resolved config + provenance (git commit, command, versions)
    <run_dir>/metrics.jsonl   one JSON object per event (train, eval, resume)
    <run_dir>/checkpoint.pt   latest checkpoint (atomic; loaded with weights_only=True)
    <run_dir>/result.json     written last and atomically: the run's scores
    <run_dir>/status          pending | running | done | failed: <why>

Every file another step reads is written whole (bench.atomic): a crash leaves the old file or
the new one, never half of one.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import yaml

from bench.atomic import atomic_file

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"
STATUS = "status"


def write_yaml(path: Path, payload: Mapping[str, Any]) -> None:
    with atomic_file(path) as handle:
        yaml.safe_dump(dict(payload), handle, sort_keys=False)


def write_status(run_dir: Path, status: str) -> None:
    with atomic_file(run_dir / STATUS) as handle:
        handle.write(status + "\n")


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    with atomic_file(path, "wb") as handle:
        torch.save(dict(state), handle)


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def append_metrics(run_dir: Path, event: Mapping[str, Any]) -> None:
    with open(run_dir / METRICS, "a") as handle:
        handle.write(json.dumps(event) + "\n")
        handle.flush()


def truncate_metrics(run_dir: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Drop events a resumed run will log again (and a line cut short by a kill)."""
    path = run_dir / METRICS
    if not path.exists():
        return
    kept = [json.dumps(event) + "\n" for event in read_metrics(run_dir) if keep(event)]
    with atomic_file(path) as handle:
        handle.write("".join(kept))


def find_runs(root: Path) -> list[Path]:
    """Every run directory below `root` (a folder holding a status file), sorted."""
    return sorted(path.parent for path in Path(root).rglob(STATUS))


def read_status(run_dir: Path) -> str:
    path = run_dir / STATUS
    return path.read_text().strip() if path.exists() else "pending"


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Every complete event; a line cut short by a kill is not an event."""
    path = run_dir / METRICS
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def versions() -> dict[str, str]:
    """Versions of everything that changes a number, as users of similar projects ask."""
    found = {"python": platform.python_version()}
    for package in ("torch", "numpy", "metaworld", "mujoco", "gymnasium", "d3rlpy", "mtbench"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def git_commit(repo: Path) -> dict[str, Any]:
    """The code's commit and whether the working tree differed from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (subprocess.CalledProcessError, FileNotFoundError):
        return {"commit": "unknown", "dirty": None}


def command_line() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
