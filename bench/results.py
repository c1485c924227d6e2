"""The run directory contract and the atomic writers behind it.

    <run_dir>/config.yaml     resolved config + provenance (git commit, command, versions)
    <run_dir>/metrics.jsonl   one JSON object per event (train, eval, resume)
    <run_dir>/checkpoint.pt   latest checkpoint (atomic, checksummed; weights_only=True)
    <run_dir>/result.json     written last and atomically: the run's scores (bench.run_result)
    <run_dir>/status          pending | running: <phase> | interrupted at step N while <phase>
                              | done | failed while <phase>: <why>   (phases: `LOADING` below)
    <run_dir>/.lock           held by the process running the run (bench.run_lock)

Every file another step reads is written whole (bench.atomic): a crash leaves the old file or
the new one, never half of one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from bench.atomic import atomic_file
from bench.errors import UserError
from bench.run_lock import is_held

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"
STATUS = "status"
RESULT_KEYS = ("per_task", "success_rate")  # what a done run's result.json is read for


def write_yaml(path: Path, payload: Mapping[str, Any]) -> None:
    with atomic_file(path) as handle:
        yaml.safe_dump(dict(payload), handle, sort_keys=False)


def write_status(run_dir: Path, status: str) -> None:
    with atomic_file(run_dir / STATUS) as handle:
        handle.write(status + "\n")


# The phases of a run, as its status says them: written when the run enters one (a handful of
# writes per run), so a stopped run says where it stopped.
LOADING = "loading data"  # opening and re-hashing the data, building the method
RESUMING = "loading the checkpoint"  # a resume only
TRAINING = "training"
FINAL_EVALUATION = "evaluating the final checkpoint"


def evaluating(step: int) -> str:
    """The phase of a periodic evaluation."""
    return f"evaluating at step {step}"


def running(phase: str) -> str:
    return f"running: {phase}"


def is_running(status: str) -> bool:
    """Whether a status says its run is running, in a phase or (written before phases) not."""
    return status == "running" or status.startswith("running: ")


def phase_of(status: str) -> str | None:
    """The phase a running run is in, or a stopped one stopped in; None where its status does
    not say (pending, done, or written before phases)."""
    if status.startswith("running: "):
        return status.removeprefix("running: ")
    if status.startswith(("interrupted", "requeued", "failed while ")) and " while " in status:
        return status.split(" while ", 1)[1].split(": ", 1)[0]
    return None


def interrupted(phase: str, step: int | None) -> str:
    """`interrupted at step N while <phase>`: N is the checkpoint's step, which a resume starts
    from (None: not known yet, as while loading data)."""
    at = "" if step is None else f" at step {step}"
    return f"interrupted{at} while {phase}"


def failed(phase: str, why: str) -> str:
    return f"failed while {phase}: {why}"


# torch is imported where a checkpoint is touched: commands that only read run files (status,
# report, --version) start in a fraction of a second without it.

# A checkpoint is this line, then torch.save's bytes: torch's zip reader checks no CRC, so a
# flipped byte in a tensor would load silently. The sha256 and length are of the bytes after it.
_CHECKPOINT_HEADER = b"mtbench-checkpoint sha256=%s bytes=%d\n"
_HEADER_START = _CHECKPOINT_HEADER.split(b"%")[0]
RESTART = "run.restart=true starts the run over (its progress is lost)"


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    payload = buffer.getbuffer()
    digest = hashlib.sha256(payload).hexdigest().encode()
    with one_line_when_full(Path(path).parent, needed=len(payload)):
        with atomic_file(path, "wb") as handle:
            handle.write(_CHECKPOINT_HEADER % (digest, len(payload)))
            handle.write(payload)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The state in `path`, after checking its length and sha256; a one-line UserError naming
    the file and the way out when it is damaged. Checkpoints written before the checksum (a
    bare torch.save) still load."""
    import io
    import pickle

    import torch

    data = Path(path).read_bytes()
    payload = _checked_payload(path, data) if data.startswith(_HEADER_START) else data
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise UserError(
            f"checkpoint {path} is damaged or no checkpoint ({type(error).__name__} from "
            f"torch.load); {RESTART}"
        ) from None


def _checked_payload(path: Path, data: bytes) -> bytes:
    """The torch bytes of a checksummed checkpoint, if they are whole and unchanged."""
    header, _, payload = data.partition(b"\n")
    fields = dict(field.split(b"=", 1) for field in header.split()[1:] if b"=" in field)
    try:
        digest, length = fields[b"sha256"].decode(), int(fields[b"bytes"])
    except (KeyError, ValueError, UnicodeDecodeError):
        raise UserError(f"checkpoint {path} has a damaged header; {RESTART}") from None
    if len(payload) != length:
        what = "truncated" if len(payload) < length else "longer than saved"
        size = f"{len(payload)} of {length} bytes after its header"
        raise UserError(f"checkpoint {path} is {what} ({size}); {RESTART}")
    if hashlib.sha256(payload).hexdigest() != digest:
        message = f"checkpoint {path} is corrupt (its sha256 differs from the one saved with it)"
        raise UserError(f"{message}; {RESTART}")
    return payload


def append_metrics(run_dir: Path, event: Mapping[str, Any]) -> None:
    """One line, whole or (a full disk) not at all."""
    line = (json.dumps(event) + "\n").encode()
    fd = os.open(run_dir / METRICS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        try:
            written = 0
            while written < len(line):
                written += os.write(fd, line[written:])
        except OSError:
            os.ftruncate(fd, size)  # takes no room: the part of the line written goes
            raise
    finally:
        os.close(fd)


@contextmanager
def one_line_when_full(run_dir: Path, needed: int | None = None) -> Iterator[None]:
    """A full disk (ENOSPC, EDQUOT) while a run's files are written, as the one line of
    bench.data.disk_space (an OutOfSpace, exit status 2). Every file is written whole, so the
    run resumes from its last checkpoint once space is freed. `needed`: the bytes of the write
    that failed; by default the room the run needs to go on, a checkpoint beside its last one."""
    try:
        yield
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        from bench.data.disk_space import OutOfSpace, out_of_space, with_margin

        first: BaseException | None = error
        while first is not None and not isinstance(first, OutOfSpace):
            first = first.__context__
        if first is not None:  # the status saying so found no room either
            raise first from None
        if needed is None:
            checkpoint = Path(run_dir) / CHECKPOINT
            needed = checkpoint.stat().st_size if checkpoint.exists() else 0
        raise out_of_space(Path(run_dir), with_margin(needed), elsewhere="run.root") from None


def truncate_metrics(run_dir: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Drop events a resumed run will log again (and a line cut short by a kill)."""
    path = run_dir / METRICS
    if not path.exists():
        return
    kept = [json.dumps(event) + "\n" for event in read_metrics(run_dir) if keep(event)]
    with atomic_file(path) as handle:
        handle.write("".join(kept))


def check_runs_folder(root: Path) -> None:
    """`root`, given to status or report, is a folder: a one-line error before any reading."""
    if not Path(root).is_dir():
        what = "not a folder" if Path(root).exists() else "no such folder"
        raise UserError(f"{what}: {root}")


def find_run_files(root: Path, name: str) -> list[Path]:
    """Every run's file `name` below `root`, sorted; not those a restart set aside."""
    return sorted(path for path in Path(root).rglob(name) if SET_ASIDE not in path.parts)


def find_runs(root: Path) -> list[Path]:
    """Every run directory below `root` (a folder holding a status file), sorted."""
    return [path.parent for path in find_run_files(root, STATUS)]


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Every event. A kill can cut the last line short (it is no event); a bad line anywhere
    else is damage, and an error naming it."""
    path = run_dir / METRICS
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    events = []
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            torn_last_line = number == len(lines) and not text.endswith("\n")
            if torn_last_line:
                break
            raise UserError(
                f"{path} line {number} is not a JSON event; the file is damaged"
            ) from None
    return events


def periodic_evaluation_lost(run_dir: Path, start: int, eval_every: int, total_steps: int) -> bool:
    """Whether a run resuming at checkpoint step `start` is due a periodic evaluation that its
    metrics.jsonl lacks (the process ended during it): the runner makes it first."""
    if not (eval_every and 0 < start < total_steps and start % eval_every == 0):
        return False
    events = read_metrics(run_dir)
    return not any(e.get("event") == "eval" and e.get("step") == start for e in events)


BEST_OF_RULE = (
    "the official code's protocol (best_suc in its main.py): the highest mean score over the "
    "run's evaluations, periodic and final, each with the same episodes per task"
)


def best_of_evaluations(events: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The best of a run's `eval` events by mean success rate (meta-RL runs: mean return):
    its scores, step and how many evaluations it was chosen from; None without evaluations.
    The earliest evaluation wins a tie."""
    evaluations = [event for event in events if event.get("event") == "eval"]
    if not evaluations:
        return None

    def score(event: Mapping[str, Any]) -> float:
        value = event["success_rate"]
        return float(event["mean_return"] if value is None else value)

    best = max(evaluations, key=score)  # max keeps the first of equal scores
    return {
        "evaluations": len(evaluations),
        "step": int(best["step"]),
        "success_rate": best["success_rate"],
        "mean_return": best["mean_return"],
        "per_task": best["per_task"],
        "rule": BEST_OF_RULE,
    }


def read_status(run_dir: Path) -> str:
    """The status file's words, with `running` told from `interrupted` by the run's lock: a
    run whose process died without a word (kill -9, a lost node) holds no lock, and is
    `interrupted (its process is gone) while <the phase it was in>`. A run with a whole
    result.json is `done`, whatever the status file says: a kill between writing the result
    and the status leaves the run done, as the runner, which skips it, sees it."""
    path = run_dir / STATUS
    status = path.read_text().strip() if path.exists() else "pending"
    if status != "done" and has_result(run_dir):
        return "done"
    if is_running(status) and not is_held(run_dir):
        phase = phase_of(status)
        return "interrupted (its process is gone)" + (f" while {phase}" if phase else "")
    return status


def has_result(run_dir: Path) -> bool:
    """Whether the run's result.json is whole: a JSON object with the scores a done run is
    read for (written atomically, it is whole or absent unless damaged later)."""
    try:
        result = json.loads((run_dir / RESULT).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(result, dict) and all(key in result for key in RESULT_KEYS)


RUN_FILES = (CHECKPOINT, RESULT, METRICS, STATUS, CONFIG)  # not its lock: its holder's


def clear_run(run_dir: Path) -> None:
    """Remove a run's files (not its lock, which the caller holds)."""
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)


SET_ASIDE = ".set-aside"  # a run's files while a restart's submission may still fail


def set_aside_run(run_dir: Path) -> None:
    """`clear_run` that can be undone: the files move into `<run_dir>/.set-aside/` until
    `restore_run` puts them back (the submission failed) or `discard_set_aside` drops them."""
    aside = run_dir / SET_ASIDE
    aside.mkdir(exist_ok=True)
    for name in RUN_FILES:
        if (run_dir / name).exists():
            os.replace(run_dir / name, aside / name)


def restore_run(run_dir: Path) -> None:
    aside = run_dir / SET_ASIDE
    if aside.is_dir():
        for kept in aside.iterdir():
            os.replace(kept, run_dir / kept.name)
        aside.rmdir()


def discard_set_aside(run_dir: Path) -> None:
    shutil.rmtree(run_dir / SET_ASIDE, ignore_errors=True)


def remove_stale_temporaries(run_dir: Path) -> None:
    """Temporary files a killed writer left (`.<name>.tmp-<pid>`); the caller holds the lock,
    so no live writer owns one."""
    for leftover in run_dir.glob(".*.tmp-*"):
        leftover.unlink(missing_ok=True)


def dataset_hash(manifest: Mapping[str, Any], tasks: Sequence[str]) -> str:
    """sha256 of what a run reads of a dataset: its source, generator settings and every file
    record (sha256, size) of its tasks. Adding other tasks to the store leaves it unchanged."""
    read = {
        "source": manifest.get("source"),
        "generator": manifest.get("generator"),
        # A task's summary (returns, success) is computed from its files: not hashed twice, so
        # a store listed before summaries existed hashes as it did.
        "tasks": {
            task: {k: v for k, v in manifest["tasks"][task].items() if k != "summary"}
            for task in tasks
        },
    }
    return hashlib.sha256(json.dumps(read, sort_keys=True).encode()).hexdigest()


def store_hash(manifest: Mapping[str, Any]) -> str:
    """sha256 of what makes a store the store it is, whichever tasks a run reads from it: the
    generator settings of a generated one; the import and its time for an imported one. Runs
    on mt5 and mt50 of one generated store share it (a report may put them in one table)."""
    made = {key: manifest.get(key) for key in ("source", "generator", "import")}
    if manifest.get("source") != "scripted":
        made["created"] = manifest.get("created")
    return hashlib.sha256(json.dumps(made, sort_keys=True).encode()).hexdigest()


def versions() -> dict[str, str]:
    """Versions of everything that changes a number, as users of similar projects ask."""
    found = {"python": platform.python_version()}
    for package in ("torch", "numpy", "metaworld", "mujoco", "gymnasium", "d3rlpy", "mtbench"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


_CODE_PATHS = ("bench", "methods", "configs", "pyproject.toml")
_RESULT_PATHSPECS = (":(exclude)reports", ":(exclude)runs")


def git_commit(repo: Path) -> dict[str, Any]:
    """The code's commit and whether the working tree differed from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        # Dirty: a tracked file changed, or an untracked file where code and configs live. Runs
        # and reports written inside the checkout are results, not code, even where a committed
        # sweep tracks them (re-running one of its cells rewrites its tracked result.json).
        changed = git("status", "--porcelain", "--", *_CODE_PATHS)
        changed_tracked = git(
            "status", "--porcelain", "--untracked-files=no", "--", ".", *_RESULT_PATHSPECS
        )
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(changed or changed_tracked)}
    except (subprocess.CalledProcessError, FileNotFoundError):
        return {"commit": "unknown", "dirty": None}


def command_line() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
