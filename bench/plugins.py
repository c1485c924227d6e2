"""Methods kept outside this repository: folders named in MTBENCH_PLUGINS (os.pathsep-separated).

Each `*.py` directly in such a folder is imported beside methods/ (it registers its method with
`bench.registry.register`), and its `configs/<group>/*.yaml` join the config groups, so a
method of one's own is the same two files as one of ours: a module and a YAML
(docs/architecture.md, "Adding a method").
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.errors import UserError

VARIABLE = "MTBENCH_PLUGINS"


def plugin_folders() -> list[Path]:
    """The plugin folders, each checked to exist."""
    folders = []
    for part in os.environ.get(VARIABLE, "").split(os.pathsep):
        if not part:
            continue
        folder = Path(part).expanduser().resolve()
        if not folder.is_dir():
            raise UserError(f"{VARIABLE}: {part} is not a folder")
        folders.append(folder)
    return folders


def plugin_config_dirs() -> list[Path]:
    """The plugins' `configs/` folders, searched after the repository's own."""
    return [folder / "configs" for folder in plugin_folders() if (folder / "configs").is_dir()]


def plugin_method_yaml(name: str) -> Path | None:
    """A plugin's `configs/method/<name>.yaml`, if one has it."""
    for configs in plugin_config_dirs():
        path = configs / "method" / f"{name}.yaml"
        if path.is_file():
            return path
    return None
