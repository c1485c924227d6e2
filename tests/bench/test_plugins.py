"""A method of one's own is two files, a module and a YAML, kept outside the repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.config import REPO_ROOT

TOY_MODULE = '''
"""A toy method: the DT backbone with no task input, and one option of its own."""
from dataclasses import dataclass
from typing import ClassVar

from bench.registry import register
from methods.dt import DecisionTransformerMethod, DTConfig


@dataclass(frozen=True)
class ToyConfig(DTConfig):
    preset_section: ClassVar[str | None] = "toy"
    label_smoothing: float = 0.0


@register("toy", config=ToyConfig)
class Toy(DecisionTransformerMethod):
    def make_conditioner(self):
        return None
'''


@pytest.fixture
def toy_plugin(tmp_path: Path) -> Path:
    folder = tmp_path / "toy_plugin"
    (folder / "configs" / "method").mkdir(parents=True)
    (folder / "toy_method.py").write_text(TOY_MODULE)
    (folder / "configs" / "method" / "toy.yaml").write_text("name: toy\n")
    return folder


def _bench(args: list[str], plugin: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MTBENCH_PLUGINS": str(plugin), "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_a_toy_method_is_one_module_and_one_yaml(toy_plugin, smoke_data_root, tmp_path):
    listed = _bench(["methods"], toy_plugin, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert any(line.split()[:1] == ["toy"] for line in listed.stdout.splitlines())

    run = ["run", "method=toy", "tasks=mt5", "scale=smoke", "progress=false",
           "toy.label_smoothing=0.1", f"data.root={smoke_data_root}",
           f"run.root={tmp_path / 'runs'}"]  # fmt: skip
    done = _bench(run, toy_plugin, tmp_path)
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "runs" / "mt5" / "near_optimal" / "toy" / "label_smoothing=0.1" / "seed0"
    result = json.loads((run_dir / "result.json").read_text())
    assert 0.0 <= result["success_rate"] <= 1.0
    method = yaml.safe_load((run_dir / "config.yaml").read_text())["config"]["method"]
    assert method["n_layer"] == 1 and method["embed_dim"] == 32  # the smoke preset's `dt:` family
    assert method["label_smoothing"] == 0.1  # its own family section, set on the command line


def test_a_plugin_option_typo_is_one_line_and_exit_2(toy_plugin, tmp_path):
    done = _bench(["run", "method=toy", "toy.label_smothing=0.1"], toy_plugin, tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: unknown option 'toy.label_smothing' for the toy: family (did you mean "
        "'toy.label_smoothing'?); its options are: "
        + ", ".join(sorted([*_dt_fields(), "label_smoothing"]))
    ]
    assert not (tmp_path / "runs").exists()


def _dt_fields() -> list[str]:
    import dataclasses

    from methods.dt import DTConfig

    return [field.name for field in dataclasses.fields(DTConfig)]


def test_a_plugin_folder_that_is_not_there_is_one_line_even_for_version(tmp_path):
    done = _bench(["--version"], tmp_path / "nowhere", tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: MTBENCH_PLUGINS: {tmp_path / 'nowhere'} is not a folder"
    ]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        # The standard library's `statistics` comes first on sys.path: the plugin would never run.
        ("statistics.py", " is named like the module 'statistics' at "),
        ("my.plugin.py", ": a plugin module's name must be a Python identifier"),
    ],
)
def test_a_plugin_module_that_cannot_be_imported_by_its_name_is_refused_not_lost(
    toy_plugin, tmp_path, name, why
):
    (toy_plugin / "toy_method.py").rename(toy_plugin / name)
    done = _bench(["methods"], toy_plugin, tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: MTBENCH_PLUGINS: {toy_plugin / name}{why}")
    assert line.endswith("rename the file")


def test_a_plugin_yaml_no_module_registers_names_the_yaml(toy_plugin, tmp_path):
    (toy_plugin / "configs" / "method" / "orphan.yaml").write_text("name: orphan\n")
    done = _bench(["run", "method=orphan", "tasks=mt5"], toy_plugin, tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(
        f"error: method 'orphan': {toy_plugin / 'configs' / 'method' / 'orphan.yaml'} selects "
        "it, but no module in the MTBENCH_PLUGINS folders registers it"
    )
    assert not (tmp_path / "runs").exists()
