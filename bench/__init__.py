"""mtbench: a benchmark harness for offline multi-task reinforcement learning."""

from bench.glfw_library import name_bundled_glfw_library

__version__ = "0.1.0"

# Before anything imports Meta-World: every entry point (the command, data workers, tests)
# imports this package first.
name_bundled_glfw_library()
