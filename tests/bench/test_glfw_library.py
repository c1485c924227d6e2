import os
import subprocess
import sys
from pathlib import Path

# Records every child process that importing bench and then Meta-World starts.
_IMPORT_AND_LIST_CHILDREN = """
import sys
started = []
sys.addaudithook(lambda event, args: event == "subprocess.Popen" and started.append(args[1]))
import bench.envs.metaworld, metaworld, glfw
print(repr(started))
print(glfw._glfw._name)
"""


def _import_in_a_fresh_process(**environment: str) -> list[str]:
    """A child on glfw's default variant (X11), as on this project's machines."""
    chosen = ("PYGLFW_LIBRARY", "PYGLFW_LIBRARY_VARIANT", "XDG_SESSION_TYPE")
    env = {k: v for k, v in os.environ.items() if k not in chosen} | environment
    child = subprocess.run([sys.executable, "-c", _IMPORT_AND_LIST_CHILDREN], env=env,
                           capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    return child.stdout.splitlines()


def test_importing_meta_world_starts_no_child_process():
    """glfw's library search ran a Python child per candidate; a stop during it left the child's
    traceback on the terminal (tests/bench/test_faults.py, the stop while the command starts)."""
    started, library = _import_in_a_fresh_process()
    assert started == "[]"
    assert library.endswith(os.path.join("glfw", "x11", "libglfw.so"))


def test_a_library_path_that_is_not_there_is_replaced():
    """Inherited from another install (a Slurm job's environment): glfw would fail to load it."""
    started, library = _import_in_a_fresh_process(PYGLFW_LIBRARY="/gone/libglfw.so")
    assert started == "[]" and library.endswith(os.path.join("glfw", "x11", "libglfw.so"))


def test_a_library_the_user_named_is_kept():
    wayland = _import_in_a_fresh_process()[1].replace("x11", "wayland")
    started, library = _import_in_a_fresh_process(PYGLFW_LIBRARY=wayland)
    assert started == "[]" and library == wayland


def test_a_library_name_the_loader_finds_is_kept():
    wayland = Path(_import_in_a_fresh_process()[1].replace("x11", "wayland"))
    started, library = _import_in_a_fresh_process(
        PYGLFW_LIBRARY=wayland.name, LD_LIBRARY_PATH=str(wayland.parent)
    )
    assert started == "[]" and library == wayland.name
