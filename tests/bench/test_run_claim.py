"""bench.run_claim: what a run folder's next launch does with what it holds."""

from bench.run_claim import resume_advice


def test_the_resume_advice_drops_a_restart_that_would_start_over():
    assert resume_advice(False) == "run the same command to resume"
    assert resume_advice(True) == "run the same command without run.restart=true to resume"
