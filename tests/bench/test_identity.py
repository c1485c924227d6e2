"""One directory per result-affecting config, with a path a researcher can read."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main
from bench.config import compose_run
from bench.identity import override_component, run_directory

BASE = ["tasks=mt5", "scale=smoke", "run.root=runs"]


def _dir(*overrides: str) -> str:
    return str(run_directory(compose_run([*BASE, *overrides])))


def test_defaults_keep_the_plain_layout():
    assert _dir("method=harmodt_f", "seed=2") == "runs/mt5/near_optimal/harmodt_f/seed2"
    # Values equal to the defaults, and keys that do not change a result, change nothing.
    assert _dir("method=harmodt_f", "method.sparsity=0.2") == _dir("method=harmodt_f")
    cosmetics = ["progress=false", "threads=2", "data.workers=1", "device=cpu"]
    cosmetics += ["train.eval_every=20", "train.log_every=5", "train.checkpoint_every=7"]
    for cosmetic in cosmetics:
        assert _dir("method=mtdt", cosmetic) == "runs/mt5/near_optimal/mtdt/seed0"


def test_non_default_values_add_one_readable_component():
    assert _dir("method=harmodt_f", "method.sparsity=0.3", "method.mask_interval=1000") == (
        "runs/mt5/near_optimal/harmodt_f/mask_interval=1000,sparsity=0.3/seed0"
    )
    # train.steps also moves HarmoDT's E (method.total_steps follows it): named once.
    assert _dir("method=harmodt_f", "train.steps=200") == (
        "runs/mt5/near_optimal/harmodt_f/train.steps=200/seed0"
    )
    # The preset's `dt` section reaches the method: the method's value names the folder.
    assert _dir("method=mtdt", "dt.learning_rate=0.002") == _dir(
        "method=mtdt", "method.learning_rate=0.002"
    )
    assert _dir("method=mtdt", "method.learning_rate=1e-3") == _dir(
        "method=mtdt", "method.learning_rate=0.001"
    )


def test_an_unreadable_or_long_component_gets_a_short_hash():
    component = override_component({"data.path": "/some/where/store"})
    assert component is not None and component.startswith("data.path=_some_where_store-h")
    long = override_component({f"option_{i}": 0.123456 for i in range(10)})
    assert long is not None and len(long) <= 64 and "-h" in long
    assert long != override_component({f"option_{i}": 0.123457 for i in range(10)})


def test_a_data_path_naming_the_generated_store_is_that_store(tmp_path):
    """result.json records the store's path; a run given it back is the same run."""
    store = tmp_path / "replay-ep6"  # the smoke preset's generated store under data.root
    plain = compose_run([*BASE, "method=mtbc", f"data.root={tmp_path}"])
    for written in (store, f"{store}/", tmp_path / "." / "replay-ep6"):
        same = compose_run([*BASE, "method=mtbc", f"data.root={tmp_path}", f"data.path={written}"])
        assert same.config == plain.config and run_directory(same) == run_directory(plain)
    link = tmp_path / "link"  # a link can be pointed at another store later: its own store
    link.symlink_to(store, target_is_directory=True)
    linked = compose_run([*BASE, "method=mtbc", f"data.root={tmp_path}", f"data.path={link}"])
    assert linked.config["data"]["path"] == str(link)
    elsewhere = compose_run([*BASE, "method=mtbc", f"data.path={tmp_path / 'replay-ep7'}"])
    assert "/data.path=" in str(run_directory(elsewhere))
    assert elsewhere.config["data"]["path"] == str(tmp_path / "replay-ep7")


def test_a_sweep_over_a_method_option_makes_one_directory_per_value(
    smoke_data_root, tmp_path, capsys
):
    args = ["run", "-m", "method=harmodt_f", "method.sparsity=0.1,0.3", *BASE[:2]]
    roots = [f"data.root={smoke_data_root}", f"run.root={tmp_path}"]
    assert main([*args, "progress=false", *roots]) == 0
    assert "2 of 2 runs finished" in capsys.readouterr().out
    made = sorted(p.parent.relative_to(tmp_path) for p in tmp_path.rglob("result.json"))
    assert made == [
        Path("mt5/near_optimal/harmodt_f/sparsity=0.1/seed0"),
        Path("mt5/near_optimal/harmodt_f/sparsity=0.3/seed0"),
    ]


@pytest.mark.parametrize("sweep", ["seed=0,0", "method.learning_rate=0.001,1e-3"])
def test_a_sweep_whose_jobs_share_a_directory_is_refused(sweep, tmp_path, capsys):
    assert main(["run", "-m", "method=mtdt", sweep, *BASE[:2], f"run.root={tmp_path}"]) == 2
    assert "are the same run" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_table3_sizes_are_named_group_choices_with_their_own_directories():
    sized = compose_run([*BASE, "method=harmodt_f", "size=l9h16"]).config["method"]
    assert (sized["n_layer"], sized["n_head"], sized["embed_dim"]) == (9, 16, 128)
    assert _dir("method=harmodt_f", "size=l9h16") == (
        "runs/mt5/near_optimal/harmodt_f/size=l9h16/seed0"
    )
    assert _dir("method=harmodt_f", "size=preset") == _dir("method=harmodt_f")


@pytest.mark.parametrize("method", ["harmodt_f", "mtbc"])
def test_the_cadence_keys_left_out_of_identity_leave_training_bit_identical(
    method, smoke_data_root, tmp_path
):
    """Evaluating, logging and checkpointing at other steps trains exactly the same network."""
    import json

    results, losses = [], []
    for number, cadence in enumerate(
        [("train.eval_every=0", "train.log_every=5", "train.checkpoint_every=25"),
         ("train.eval_every=20", "train.log_every=25", "train.checkpoint_every=7")]
    ):  # fmt: skip
        root = tmp_path / str(number)
        args = ["run", f"method={method}", *BASE, f"run.root={root}", "progress=false"]
        assert main([*args, f"data.root={smoke_data_root}", "eval.episodes=1", *cadence]) == 0
        [result] = root.rglob("result.json")
        scores = json.loads(result.read_text())
        results.append((scores["per_task"], scores["success_rate"]))
        events = map(json.loads, (result.parent / "metrics.jsonl").open())
        losses.append({e["step"]: e["loss"] for e in events if e["event"] == "train"})
    assert results[0] == results[1]
    assert losses[0][50] == losses[1][50] and losses[0][25] == losses[1][25]
