"""`bench perf`: speed of each stage (train, mask update, evaluation, data) on synthetic data."""
