"""bench.run_claim: what a run folder's next launch does with what it holds."""

import pytest
import yaml

from bench.errors import UserError
from bench.run_claim import check_claimable, config_differences, resume_advice
from bench.settings import load_settings


def test_the_resume_advice_drops_a_restart_that_would_start_over():
    assert resume_advice(False) == "run the same command to resume"
    assert resume_advice(True) == "run the same command without run.restart=true to resume"


def _m3dt_run_made_before_router_init(run_dir) -> list[str]:
    """An M3DT run directory with a result, saved before `method.router_init` existed (as the
    MT30 sweep's, whose routers were drawn as router_init=normal draws them)."""
    overrides = ["method=m3dt", "tasks=mt5", "scale=smoke", f"run.dir={run_dir}"]
    config = load_settings(overrides).config
    del config["method"]["router_init"]
    run_dir.mkdir()
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
    overrides = _m3dt_run_made_before_router_init(tmp_path / "run")
    refusal = r"different config with progress: method.router_init"
    with pytest.raises(UserError, match=refusal) as refused:
        check_claimable(load_settings(overrides))
    # Its advice, taken: the old value alone would name another directory (bench.identity).
    advice = str(refused.value).rpartition("; ")[2].removesuffix(" resumes it as made)")
    assert advice == f'run.dir={tmp_path / "run"} method.router_init="normal"'
    check_claimable(load_settings([*overrides, *advice.split()]))
