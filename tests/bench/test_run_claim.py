"""bench.run_claim: what a run folder's next launch does with what it holds."""

import re
import shlex

import pytest
import yaml

from bench.config import hydra_quoted
from bench.errors import UserError
from bench.run_claim import check_claimable, config_differences, resume_advice
from bench.settings import load_settings


def test_the_resume_advice_drops_a_restart_that_would_start_over():
    assert resume_advice(False) == "run the same command to resume"
    assert resume_advice(True) == "run the same command without run.restart=true to resume"


def _m3dt_run_made_before_router_init(run_dir) -> list[str]:
    """An M3DT run directory with a result, saved before `method.router_init` existed (as the
    MT30 sweep's, whose routers were drawn as router_init=normal draws them)."""
    overrides = ["method=m3dt", "tasks=mt5", "scale=smoke", f"run.dir={hydra_quoted(str(run_dir))}"]
    config = load_settings(overrides).config
    del config["method"]["router_init"]
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"overrides": overrides, "config": config}))
    (run_dir / "result.json").write_text("{}")
    return overrides


def test_a_saved_config_without_an_option_added_later_stands_for_its_earlier_value(tmp_path):
    overrides = _m3dt_run_made_before_router_init(tmp_path / "run")
    today = load_settings(overrides).config
    assert config_differences(tmp_path / "run" / "config.yaml", today) == (
        "method.router_init ('normal', saved before the option existed -> 'official')"
    )
    as_made = load_settings([*overrides, "method.router_init=normal"]).config
    assert config_differences(tmp_path / "run" / "config.yaml", as_made) is None


def test_a_run_made_before_an_option_is_not_taken_for_one_of_its_default(tmp_path):
    run_dir = tmp_path / "my runs, old" / "m3dt"  # a space and a comma: quoted for Hydra
    overrides = _m3dt_run_made_before_router_init(run_dir)
    refusal = r"different config with progress: method.router_init"
    with pytest.raises(UserError, match=refusal) as refused:
        check_claimable(load_settings(overrides))
    # Its advice, pasted into a shell: the old value alone would name another directory.
    advice = re.search(r"`(.*)` added to the command resumes it as made", str(refused.value))
    assert advice is not None
    check_claimable(load_settings([*overrides, *shlex.split(advice.group(1))]))

    # Another difference besides: the advice would only be refused again, so none is given.
    both = r"grouping_batches \(10 -> 5\), method.router_init"
    with pytest.raises(UserError, match=both) as refused:
        check_claimable(load_settings([*overrides, "method.grouping_batches=5"]))
    assert "resumes it as made" not in str(refused.value)
