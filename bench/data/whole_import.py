"""All-or-nothing imports: a new store appears whole, or not at all.

The importers (`import_npz`, `import_prompt_dt`) write every task into a staging folder inside
the destination first, then move them all in and write the manifest last. Anything that fails,
Ctrl-C included, removes what was staged and moved, and the destination itself if it was made
here: no partial store is left that a run could mistake for a dataset. What a killed import
(kill -9) left, the next import into the same folder removes: its staging folder first
(bench.data.writers), then each task folder it had moved in, before moving its own.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench.data.store import DatasetStore, add_tasks_to_manifest
from bench.data.writers import import_staging_folder, remove_abandoned_staging


def import_whole(
    dest: Path, write_tasks: Callable[[Path], dict[str, dict]], header: Mapping[str, Any]
) -> DatasetStore:
    """`write_tasks(staging)` writes every task into `staging` (bench.data.store.write_task)
    and returns their manifest entries; they become the store at `dest`, with `header`."""
    dest_existed = dest.exists()
    if dest_existed:
        remove_abandoned_staging(dest)
    staging = import_staging_folder(dest)
    moved: list[Path] = []
    try:
        entries = write_tasks(staging)
        for task in entries:
            target = dest / task
            if target.exists():  # dest has no manifest, so this is a leftover of a killed import
                shutil.rmtree(target)
            os.rename(staging / task, target)
            moved.append(target)
        add_tasks_to_manifest(dest, entries, header)
    except BaseException:
        for target in moved:
            shutil.rmtree(target, ignore_errors=True)
        shutil.rmtree(staging if dest_existed else dest, ignore_errors=True)
        raise
    shutil.rmtree(staging)
    return DatasetStore(dest)
