"""Repairing a generated store: `bench data generate` regenerates exactly the damaged tasks."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.data.generate import generate_dataset
from bench.data.store import DatasetStore
from bench.errors import UserError
from bench.suites import get_suite

EPISODES = 1  # the smallest store the CLI makes: one episode per mt5 task
TASKS = get_suite("mt5").tasks


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `data.root` holding the mt5 store exactly as `bench data generate` makes it."""
    data_root = tmp_path_factory.mktemp("pristine")
    generate_dataset(data_root / f"replay-ep{EPISODES}", TASKS, EPISODES, progress=False)
    return data_root


@pytest.fixture
def data_root(pristine: Path, tmp_path: Path) -> Path:
    shutil.copytree(pristine, tmp_path / "data")
    return tmp_path / "data"


def generate(data_root: Path, *flags: str) -> int:
    overrides = [f"data.root={data_root}", f"episodes_per_task={EPISODES}", "progress=false"]
    return main(["data", "generate", *flags, "tasks=mt5", *overrides])


def file_identities(store: Path, tasks: list[str]) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every file of `tasks`: a rewritten file gets a new inode."""
    return {
        str(path.relative_to(store)): (path.stat().st_ino, path.stat().st_mtime_ns)
        for task in tasks
        for path in (store / task).iterdir()
    }


def assert_same_bytes(store: Path, pristine_store: Path, task: str) -> None:
    for path in (pristine_store / task).glob("*.npy"):
        assert (store / task / path.name).read_bytes() == path.read_bytes(), (task, path.name)


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_missing_file_or_folder_regenerates_only_those_tasks(data_root, pristine, capsys):
    store = data_root / f"replay-ep{EPISODES}"
    (store / TASKS[0] / "observations.npy").unlink()
    shutil.rmtree(store / TASKS[3])
    intact = [task for task in TASKS if task not in (TASKS[0], TASKS[3])]
    before = file_identities(store, intact)
    capsys.readouterr()

    assert generate(data_root) == 0

    repairs = [line for line in capsys.readouterr().err.splitlines() if "repaired" in line]
    assert sorted(repairs) == [  # in the order they finish
        f"repaired {TASKS[0]}: observations.npy is missing",
        f"repaired {TASKS[3]}: its folder is missing",
    ]
    assert file_identities(store, intact) == before
    for task in TASKS:
        assert_same_bytes(store, pristine / store.name, task)
    assert DatasetStore(store).tasks == list(TASKS)
    assert main(["data", "verify", str(store)]) == 0


def test_flipped_byte_is_repaired_with_verify_by_the_command_the_error_names(
    data_root, pristine, capsys
):
    store = data_root / f"replay-ep{EPISODES}"
    damaged = store / TASKS[1] / "actions.npy"
    flip_last_byte(damaged)
    manifest = (store / "manifest.json").read_text()

    # The size is right, so a plain generate (what every run does) finds nothing to repair.
    assert generate(data_root) == 0
    assert "repaired" not in capsys.readouterr().err
    assert (store / "manifest.json").read_text() == manifest
    assert damaged.read_bytes() != (pristine / store.name / TASKS[1] / "actions.npy").read_bytes()

    with pytest.raises(UserError, match=re.escape("actions.npy is corrupt")) as error:
        DatasetStore(store).open_task(TASKS[1])
    command = re.search(r"repair with `([^`]*)`", str(error.value))
    assert command is not None
    argv = shlex.split(command[1])
    assert argv[:4] == ["bench", "data", "generate", "--verify"]
    assert main([*argv[1:], "progress=false"]) == 0

    stderr = capsys.readouterr().err
    assert f"repaired {TASKS[1]}: actions.npy is corrupt" in stderr
    assert stderr.count("repaired") == 1
    assert_same_bytes(store, pristine / store.name, TASKS[1])
    DatasetStore(store).open_task(TASKS[1])
