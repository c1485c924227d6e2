"""A run's method section comes from the method's config dataclass, its presets' family
sections and the command line, in that order (bench/method_section.py)."""

from __future__ import annotations

import dataclasses

import pytest

from bench.config import compose_run
from bench.errors import UserError
from bench.identity import flatten
from bench.registry import get_method, registered


@pytest.mark.parametrize("name", registered())
def test_the_paper_preset_runs_the_dataclass_defaults(name):
    """scale=paper changes no default: each value is the dataclass's, or the run key a field
    follows (the method YAML only selects)."""
    config = compose_run([f"method={name}", "scale=paper", "tasks=mt50"]).config
    flat = flatten(config)
    for field in dataclasses.fields(get_method(name).config_cls):
        value = config["method"][field.name]
        if "follows" in field.metadata:
            assert value == flat[field.metadata["follows"]], field.name
        else:
            default = field.default if field.default is not dataclasses.MISSING else None
            assert value == (list(default) if isinstance(default, tuple) else default), field.name


def test_a_family_section_sets_its_family_and_leaves_the_others_alone():
    dt = compose_run(["method=mtdt", "scale=smoke", "dt.n_layer=2"]).config
    assert dt["method"]["n_layer"] == 2
    bc = compose_run(["method=mtbc", "scale=smoke", "dt.n_layer=2"]).config
    assert bc["method"] == compose_run(["method=mtbc", "scale=smoke"]).config["method"]
    assert "dt" not in dt and "harmodt" not in dt  # the method section holds what it receives


def test_the_command_line_method_value_wins_over_its_family_section():
    config = compose_run(["method=harmodt_r", "scale=smoke", "harmodt.sparsity=0.4",
                          "method.sparsity=0.3"]).config  # fmt: skip
    assert config["method"]["sparsity"] == 0.3


def test_a_harmodt_name_pins_its_variant():
    with pytest.raises(UserError, match=r"method.variant 'random'; choose one of: fisher"):
        compose_run(["method=harmodt_f", "method.variant=random"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "dt.n_layers=2",
            r"unknown option 'dt.n_layers' for the dt: family \(did you mean 'dt.n_layer'\?\); "
            "its options are: ",
        ),
        ("method.n_layers=2", r"unknown option 'method.n_layers' for method 'mtdt'"),
        ("dt.n_layer=two", r"dt.n_layer must be an integer, got 'two'"),
        ("dt.n_layer=02", r"got '02' \(Hydra reads a number with a leading zero as text: write 2"),
        ("~method.n_layer", r"~method.n_layer: method.n_layer has a default and cannot be deleted"),
    ],
)
def test_a_bad_method_option_is_one_user_error(override, message):
    with pytest.raises(UserError, match=message):
        compose_run(["method=mtdt", override])


def test_a_preset_typo_in_a_family_section_is_one_user_error(tmp_path, monkeypatch):
    presets = tmp_path / "configs" / "scale"
    presets.mkdir(parents=True)
    preset = "# @package _global_\nscale:\n  name: typo\ndt:\n  n_layers: 3\n"
    (presets / "typo.yaml").write_text(preset)
    monkeypatch.setenv("MTBENCH_PLUGINS", str(tmp_path))
    with pytest.raises(UserError, match=r"unknown option\(s\) n_layers in a preset's dt: section"):
        compose_run(["method=mtbc", "scale=typo"])


@pytest.mark.parametrize("key", ["method.total_steps", "m3dt.total_steps"])
def test_a_field_that_only_copies_a_run_key_cannot_be_set(key):
    """M3DT's stages split the steps the run trains: a total of its own would leave a run that
    never reaches its router (train.steps=50, total 1000: stages to 400, 600, 1000)."""
    with pytest.raises(UserError, match=rf"{key} is train.steps for .*: set train.steps= instead"):
        compose_run(["method=m3dt", "scale=smoke", f"{key}=1000"])
    config = compose_run(["method=m3dt", "scale=smoke", "train.steps=90"]).config
    assert config["method"]["total_steps"] == 90
    harmodt = compose_run(["method=harmodt_f", "scale=smoke", "method.total_steps=1000"]).config
    assert harmodt["method"]["total_steps"] == 1000  # E of Eq. 12 may differ from the run's length


@pytest.mark.parametrize(
    ("folder", "file", "text", "where"),
    [
        ("scale", "long.yaml", "# @package _global_\nscale: {name: long}\nm3dt: {total_steps: 9}\n",
         "a preset's m3dt: section"),
        ("method", "m3dt_long.yaml", "name: m3dt\ntotal_steps: 9\n",
         "a method YAML selecting 'm3dt'"),
    ],
)  # fmt: skip
def test_a_run_key_copy_set_by_a_preset_or_a_method_yaml_is_one_user_error(
    folder, file, text, where, tmp_path, monkeypatch
):
    (tmp_path / "configs" / folder).mkdir(parents=True)
    (tmp_path / "configs" / folder / file).write_text(text)
    monkeypatch.setenv("MTBENCH_PLUGINS", str(tmp_path))
    choice = "scale=long" if folder == "scale" else "method=m3dt_long"
    with pytest.raises(UserError, match=rf"^{where} sets total_steps, which is train.steps for"):
        compose_run(["method=m3dt", choice] if folder == "scale" else [choice])


def test_a_preset_may_set_a_run_key_copy_to_the_key_it_copies(tmp_path, monkeypatch):
    (tmp_path / "configs" / "scale").mkdir(parents=True)
    preset = ("# @package _global_\nscale: {name: long}\nm3dt: {total_steps: '${train.steps}'}\n"
              "train: {steps: 50, log_every: 10, checkpoint_every: 25, eval_every: 0}\n")
    (tmp_path / "configs" / "scale" / "long.yaml").write_text(preset)
    monkeypatch.setenv("MTBENCH_PLUGINS", str(tmp_path))
    config = compose_run(["method=m3dt", "scale=long", "train.steps=70"]).config
    assert config["method"]["total_steps"] == 70
