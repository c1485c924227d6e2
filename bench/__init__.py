"""mtbench: a benchmark harness for offline multi-task reinforcement learning."""

__version__ = "0.1.0"
