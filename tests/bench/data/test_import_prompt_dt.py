"""Prompt-DT's pickled release: NumPy 1 pickles load under NumPy 2, arrays arrive exactly, prompt
episodes come last and are counted, and a pickle that asks for anything but numpy runs nothing."""

from __future__ import annotations

import functools
import os
import pickle
import pickletools
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bench.data.import_prompt_dt import import_prompt_dt
from bench.data.safe_unpickle import load_numpy_pickle
from bench.errors import UserError

REPO = Path(__file__).resolve().parents[3]
STEPS = 12
# {family: (obs dim, act dim, parameter, task indices)}; 10 sorts before 2 as text, not as a task.
RELEASE = {
    "cheetah_vel": (20, 6, "velocity", (0, 2, 10)),
    "ant_dir": (27, 8, "goal", (0, 1)),
}
EPISODES = {"expert": 3, "prompt-expert": 2}
# config/cheetah_vel/config_cheetah_vel_task7.pkl of mxu34/prompt-dt, byte for byte: a NumPy 1
# pickle of [{'velocity': np.float64(0.6)}] naming numpy.core.multiarray.scalar.
RELEASED_CONFIG = bytes.fromhex(
    "80035d71007d7101580800000076656c6f636974797102636e756d70792e636f72652e6d756c74696172726179"
    "0a7363616c61720a7103636e756d70790a64747970650a71045802000000663871054b004b01877106527107284b"
    "0358010000003c71084e4e4e4affffffff4affffffff4b00747109624308333333333333e33f710a86710b52710c"
    "73612e"
)


def as_numpy1(data: bytes) -> bytes:
    """A protocol <= 3 pickle made by NumPy 2, with the module names NumPy 1 writes.

    Protocols 0-3 name a global as text (`c<module>\\n<name>\\n`), so renaming is a local edit.
    """
    out, copied = [], 0
    for opcode, arg, position in pickletools.genops(data):
        if opcode.name == "GLOBAL" and arg.startswith("numpy._core."):
            module, name = arg.replace("numpy._core.", "numpy.core.", 1).split(" ")
            out += [data[copied:position], f"c{module}\n{name}\n".encode()]
            copied = position + len(arg) + 2
    return b"".join([*out, data[copied:]])


def globals_named(data: bytes) -> set[str]:
    return {arg for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}


def write_pickle(path: Path, obj: object, numpy1: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = pickle.dumps(obj, protocol=3)
    path.write_bytes(as_numpy1(data) if numpy1 else data)


def trajectory(rng: np.random.Generator, family: str, terminal: bool = False) -> dict:
    obs_dim, act_dim = RELEASE[family][:2]
    # cheetah_vel in float32 (kept bit for bit), ant_dir in float64 (stored as float32).
    dtype = np.float32 if family == "cheetah_vel" else np.float64
    observations = rng.standard_normal((STEPS + 1, obs_dim)).astype(dtype)
    terminals = np.zeros((STEPS, 1), dtype=bool)
    terminals[-1] = terminal
    return {
        "observations": observations[:-1],
        "next_observations": observations[1:],
        "actions": rng.uniform(-1, 1, (STEPS, act_dim)).astype(dtype),
        "rewards": rng.standard_normal((STEPS, 1)).astype(dtype),
        "terminals": terminals,
    }


@pytest.fixture
def release(tmp_path: Path) -> tuple[Path, dict]:
    """A small release in Prompt-DT's layout; cheetah_vel's files are NumPy 1 pickles."""
    source = tmp_path / "prompt-dt"
    written: dict = {}
    for family, (_, _, parameter, indices) in RELEASE.items():
        numpy1 = family == "cheetah_vel"
        for index in indices:
            rng = np.random.default_rng([len(family), index])
            value = float(rng.uniform(0, 3))
            config = source / "config" / family / f"config_{family}_task{index}.pkl"
            write_pickle(config, [{parameter: np.float64(value)}], numpy1)
            task = written[f"{family}-{index}"] = {"parameter": {parameter: value}}
            for kind, count in EPISODES.items():
                # The last prompt trajectory ends by termination, every other one by the limit.
                ends = [kind != "expert" and i == count - 1 for i in range(count)]
                task[kind] = [trajectory(rng, family, terminal) for terminal in ends]
                path = source / "data" / family / f"{family}-{index}-{kind}.pkl"
                write_pickle(path, task[kind], numpy1)
    (source / "data" / "ML1-pick-place-v2").mkdir()  # in the release; not a MuJoCo family
    return source, written


def test_import_keeps_every_array_with_prompt_episodes_last_and_counted(release, tmp_path):
    source, written = release
    store = import_prompt_dt(source, tmp_path / "data", progress=False)

    cheetahs, ants = (
        ["cheetah_vel-0", "cheetah_vel-2", "cheetah_vel-10"],
        ["ant_dir-0", "ant_dir-1"],
    )
    assert store.tasks == cheetahs + ants
    for task in store.tasks:
        episodes = written[task]["expert"] + written[task]["prompt-expert"]
        arrays = store.open_task(task)
        for name in ("observations", "actions", "rewards"):
            expected = np.concatenate([e[name] for e in episodes]).astype(np.float32)
            assert_same(getattr(arrays, name), expected[:, 0] if name == "rewards" else expected)
        np.testing.assert_array_equal(arrays.episode_starts, np.arange(5) * STEPS)
        # The last (prompt) episode terminates; every other one ends at its time limit.
        ends = np.arange(1, 6) * STEPS - 1
        np.testing.assert_array_equal(np.flatnonzero(arrays.terminals), ends[-1:])
        np.testing.assert_array_equal(np.flatnonzero(arrays.timeouts), ends[:-1])
        entry = store.manifest["tasks"][task]
        assert entry["prompt_episodes"] == 2
        assert entry["task_parameters"] == written[task]["parameter"]
    store.verify()
    assert store.manifest["source"] == "prompt-dt"
    assert store.manifest["import"]["families"] == ["cheetah_vel", "ant_dir"]
    assert store.manifest["import"]["path"] == str(source.resolve())
    assert store.manifest["versions"]["numpy"] == np.__version__
    assert not list((tmp_path / "data").glob(".import-staging-*"))


def assert_same(got: np.ndarray, expected: np.ndarray) -> None:
    """Equal values, shape and dtype (assert_array_equal alone would broadcast (T,) to (T, 1))."""
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_the_fake_release_has_numpy1_names_and_they_load_under_numpy2(release):
    source, written = release
    path = source / "data" / "cheetah_vel" / "cheetah_vel-2-expert.pkl"
    named = globals_named(path.read_bytes())
    assert "numpy.core.multiarray _reconstruct" in named
    assert not any(name.startswith("numpy._core") for name in named)
    loaded = load_numpy_pickle(path)
    for got, expected in zip(loaded, written["cheetah_vel-2"]["expert"], strict=True):
        assert got.keys() == expected.keys()
        for key in expected:
            assert_same(got[key], expected[key])


def test_a_config_pickle_of_the_release_itself_loads(tmp_path):
    path = tmp_path / "config_cheetah_vel_task7.pkl"
    path.write_bytes(RELEASED_CONFIG)
    [config] = load_numpy_pickle(path)
    assert config == {"velocity": 0.6} and type(config["velocity"]) is np.float64


OBJECTS = [
    np.arange(6, dtype=np.float32).reshape(2, 3),
    np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    np.array([True, False]),
    np.zeros(0, dtype=np.int64),
    np.arange(3, dtype=">f8"),
    np.float64(0.25),
    np.bool_(True),
    np.dtype("i4"),
    {"list": [1, 2.5, "x", None], "tuple": (b"", b"ab"), "set": {1, 2}, "frozen": frozenset([3])},
]


# NumPy 1 names are made by editing GLOBAL opcodes, which protocols 4 and 5 do not use.
@pytest.mark.parametrize(
    "protocol, numpy1", [(p, False) for p in range(6)] + [(p, True) for p in range(4)]
)
def test_what_numpy_pickles_loads_as_pickle_would_load_it(tmp_path, protocol, numpy1):
    path = tmp_path / "objects.pkl"
    data = pickle.dumps(OBJECTS, protocol=protocol)
    path.write_bytes(as_numpy1(data) if numpy1 else data)
    for got, expected in zip(load_numpy_pickle(path), pickle.loads(data), strict=True):
        assert type(got) is type(expected)
        if isinstance(expected, np.ndarray):
            assert_same(got, expected)
            assert got.flags.f_contiguous == expected.flags.f_contiguous
        else:
            assert got == expected


class Calls:
    """Unpickles as `function(*args)`, then given `state` if any: what a hostile pickle does."""

    def __init__(self, function: Callable, *args: object, state: object = None) -> None:
        self.function, self.args, self.state = function, args, state

    def __reduce__(self) -> tuple:
        return self.function, self.args, self.state


def hostile(marker: Path) -> dict[str, Calls]:
    """{the global a pickle asks for: the pickled call}; each would create `marker`."""
    touch = f"touch {marker}"
    return {
        "os.system": Calls(os.system, touch),
        "builtins.eval": Calls(eval, f"__import__('os').system({touch!r})"),
        "subprocess.Popen": Calls(subprocess.Popen, ["touch", str(marker)]),
        "functools.partial": Calls(functools.partial, os.system, touch),
        "numpy.load": Calls(np.load, str(marker)),
    }


@pytest.mark.parametrize(
    "asked", ["os.system", "builtins.eval", "subprocess.Popen", "functools.partial", "numpy.load"]
)
def test_a_hostile_pickle_is_refused_runs_nothing_and_imports_nothing(release, tmp_path, asked):
    source, written = release
    marker = tmp_path / "pwned"
    # In the last cheetah_vel task's prompts, after valid arrays: earlier tasks are staged by then.
    path = source / "data" / "cheetah_vel" / "cheetah_vel-10-prompt-expert.pkl"
    write_pickle(path, [written["cheetah_vel-10"]["prompt-expert"][0], hostile(marker)[asked]])
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "notes.txt").write_text("a user's file")

    with pytest.raises(UserError) as error:
        import_prompt_dt(source, dest, progress=False)

    assert str(error.value) == (
        f"{path}: refused to unpickle: it asks for {asked} "
        "(only numpy arrays, dtypes and plain containers are allowed)"
    )
    assert not marker.exists()
    assert [p.name for p in dest.iterdir()] == ["notes.txt"]


def test_the_hostile_pickles_do_run_under_plain_pickle(tmp_path):
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(hostile(marker)["os.system"], protocol=3))
    assert marker.exists()  # so the test above shows the refusal, not a harmless file


def test_a_dtype_state_that_would_make_floats_object_pointers_is_refused(tmp_path):
    # numpy's own setstate accepts this: float64 flagged as holding Python objects, which numpy
    # then mishandles in arrays of it (internal errors while loading or freeing them).
    state = (3, "<", None, None, None, -1, -1, 0x3F)
    data = pickle.dumps([Calls(np.dtype, "f8", False, True, state=state)], protocol=3)
    [dtype] = pickle.loads(data)
    assert dtype == np.float64 and dtype.hasobject
    path = tmp_path / "dtype.pkl"
    path.write_bytes(data)
    with pytest.raises(UserError, match=r"dtype.pkl: refused to unpickle: it sets the numpy dtype"):
        load_numpy_pickle(path)


def set_value(index: tuple, value: float) -> Callable[[dict], None]:
    def change(episode: dict) -> None:
        episode["rewards"] = episode["rewards"].copy()
        episode["rewards"][index] = value

    return change


@pytest.mark.parametrize(
    "family, damage, problem",
    [
        ("ant_dir", lambda e: e.update(observations=e["observations"][:, :26]),
         "has observations of shape (12, 26), expected (T, 27) for ant_dir"),
        ("cheetah_vel", lambda e: e.update(actions=np.tile(e["actions"], 2)[:, :8]),
         "has actions of shape (12, 8), expected (T, 6) for cheetah_vel"),
        ("ant_dir", set_value((3, 0), np.nan), "has non-finite rewards"),
        ("ant_dir", set_value((3, 0), 1e300), "has non-finite rewards (as float32)"),
        ("cheetah_vel", lambda e: e.update(actions=e["actions"][:-1]),
         "has arrays of different lengths"),
        ("cheetah_vel", lambda e: e.pop("actions"), "has no actions"),
        ("cheetah_vel", lambda e: e.update(terminals=np.full((STEPS, 1), 0.5)),
         "has terminals other than 0 and 1"),
        ("cheetah_vel", lambda e: e.update(rewards=list(e["rewards"])),
         "has rewards of type list, not a numeric array"),
    ],
)  # fmt: skip
def test_a_bad_trajectory_is_named_with_its_file_and_nothing_is_imported(
    release, tmp_path, family, damage, problem
):
    source, written = release
    task = f"{family}-{RELEASE[family][3][-1]}"
    episodes = written[task]["expert"]
    damage(episodes[1])
    path = source / "data" / family / f"{task}-expert.pkl"
    write_pickle(path, episodes)

    with pytest.raises(UserError) as error:
        import_prompt_dt(source, tmp_path / "data", progress=False)

    assert str(error.value).startswith(f"trajectory file {path}: trajectory 1 {problem}")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "data").exists()


def test_a_truncated_or_foreign_file_is_named(release, tmp_path):
    source, written = release
    path = source / "data" / "ant_dir" / "ant_dir-1-expert.pkl"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UserError, match=re.escape(f"{path} is not a readable pickle (")) as error:
        import_prompt_dt(source, tmp_path / "data", progress=False)
    assert "\n" not in str(error.value)
    write_pickle(path, written["ant_dir-1"]["expert"][0])
    with pytest.raises(UserError, match=r"ant_dir-1-expert\.pkl holds a dict, not a list"):
        import_prompt_dt(source, tmp_path / "data", progress=False)
    assert not (tmp_path / "data").exists()


def test_a_terminal_before_the_last_step_is_kept_as_the_release_has_it(release, tmp_path):
    source, written = release
    episodes = written["ant_dir-0"]["expert"]
    episodes[1]["terminals"] = np.arange(STEPS)[:, None] == 4  # the ant fell; the rollout went on
    write_pickle(source / "data" / "ant_dir" / "ant_dir-0-expert.pkl", episodes)

    arrays = import_prompt_dt(source, tmp_path / "data", progress=False).open_task("ant_dir-0")

    second = STEPS + np.arange(STEPS)
    np.testing.assert_array_equal(np.flatnonzero(arrays.terminals[second]), [4])
    assert arrays.timeouts[second[-1]]  # it did not end by termination


def test_missing_files_and_unknown_families_are_named(release, tmp_path):
    source, _ = release
    dest = tmp_path / "data"
    unknown = r"unknown Prompt-DT task family 'cheetah_run' \(did you mean 'cheetah_\w+'\?\)"
    with pytest.raises(UserError, match=unknown):
        import_prompt_dt(source, dest, families=["cheetah_run"], progress=False)
    with pytest.raises(UserError, match=r"data/cheetah_dir is missing"):
        import_prompt_dt(source, dest, families=["cheetah_dir"], progress=False)
    config = source / "config" / "ant_dir" / "config_ant_dir_task1.pkl"
    config.unlink()
    with pytest.raises(UserError, match=re.escape(f"{config} is missing; task 1 of ant_dir")):
        import_prompt_dt(source, dest, progress=False)
    write_pickle(config, [{"velocity": 1.0}])
    with pytest.raises(UserError, match=r"holds \[\{'velocity': 1.0\}\]; expected \[\{'goal'"):
        import_prompt_dt(source, dest, progress=False)
    assert not dest.exists()


def test_importing_again_is_a_no_op_and_a_different_import_is_refused(release, tmp_path):
    source, _ = release
    dest = tmp_path / "data"
    first = import_prompt_dt(source, dest, families=["cheetah_vel"], progress=False)
    manifest = (dest / "manifest.json").read_text()

    again = import_prompt_dt(source, dest, families=["cheetah_vel"], progress=False)
    assert again.tasks == first.tasks and (dest / "manifest.json").read_text() == manifest
    with pytest.raises(UserError, match="already holds a different dataset"):
        import_prompt_dt(source, dest, progress=False)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "bench.cli", "data", "import-prompt-dt", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO)


def test_cli_imports_a_family_and_a_missing_folder_exits_2_with_one_line(release, tmp_path):
    source, _ = release
    done = run_cli(str(source), "--family", "ant_dir", "--out", str(tmp_path / "ant"))
    assert done.returncode == 0, done.stderr
    out = tmp_path / "ant"
    assert done.stdout == f"{out}: imported 2 tasks; train with data.path={out}\n"

    missing = run_cli(str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"))
    assert missing.returncode == 2
    assert missing.stderr == (
        f"error: {tmp_path / 'nowhere'} is not a folder; expected Prompt-DT's data/ and config/ "
        "folders\n"
    )
    assert not (tmp_path / "out").exists()


def test_a_deeply_nested_pickle_is_one_line_and_exit_2_not_a_recursion_error(release, tmp_path):
    source, _ = release
    depth = 200_000  # written by opcodes: pickle.dumps itself would overflow the stack
    deep = b"\x80\x03" + b"]" * depth + b"a" * (depth - 1) + b"."
    config = source / "config" / "ant_dir" / "config_ant_dir_task0.pkl"
    config.write_bytes(deep)

    done = run_cli(str(source), "--family", "ant_dir", "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"error: {config}: refused to unpickle: it nests containers more than 100 deep (only "
        "numpy arrays, dtypes and plain containers are allowed)"
    )
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_release_file_that_is_a_fifo_is_refused_not_read_forever(release, tmp_path):
    source, _ = release
    path = source / "data" / "ant_dir" / "ant_dir-1-expert.pkl"
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(UserError, match=re.escape(f"{path} is not a regular file; task 1 of")):
        import_prompt_dt(source, tmp_path / "data", progress=False)
