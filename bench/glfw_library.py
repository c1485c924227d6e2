"""Meta-World imports gymnasium's MuJoCo renderer, which imports glfw, and glfw finds its library
by starting a Python child per candidate file to read the library's version. bench never opens a
window, and that child is a hazard: a Ctrl-C or SIGTERM that ends bench while the child runs (its
first second, while torch and Meta-World are imported) leaves the child writing to a closed pipe,
and its traceback lands on the user's terminal after bench's one line. Naming the library that
glfw's wheel bundles in `PYGLFW_LIBRARY` makes glfw load it in-process, with no child.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def name_bundled_glfw_library() -> None:
    """Set `PYGLFW_LIBRARY` to the wheel's own library (glfw's default variant, X11, or Wayland
    where glfw itself would pick it), unless it is set already (the user's choice, a path or a
    name the loader finds, or ours inherited by a worker or a Slurm job), or glfw is not
    installed this way. A path that is not there is replaced: inherited from another install,
    glfw would fail to load it."""
    chosen = os.environ.get("PYGLFW_LIBRARY", "")
    if chosen and (not os.path.isabs(chosen) or Path(chosen).is_file()):
        return
    spec = importlib.util.find_spec("glfw")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return
    variant = os.environ.get("PYGLFW_LIBRARY_VARIANT", "").lower()
    if variant not in ("x11", "wayland"):
        variant = "wayland" if os.environ.get("XDG_SESSION_TYPE") == "wayland" else "x11"
    library = Path(spec.submodule_search_locations[0]) / variant / "libglfw.so"
    if library.is_file():
        os.environ["PYGLFW_LIBRARY"] = str(library)
