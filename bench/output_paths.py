"""Where a command will write, checked before it computes anything: a bad path is one line and
exit status 2, with nothing made (not a traceback after minutes of work, or half a report)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.errors import UserError


def check_writable(folder: Path, what: str) -> None:
    """`folder` can be made and written: its nearest existing ancestor is a writable folder.

    Probed with a temporary file that is removed at once (os.access says yes to root on a
    read-only mount of some file systems), so nothing is left behind.
    """
    ancestor = Path(folder)
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{what}: cannot make {folder}: {ancestor} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        message = f"{what}: cannot write under {ancestor} ({reason}); choose another folder"
        raise UserError(message) from None


def check_output_file(path: Path, what: str, suffixes: tuple[str, ...] = ()) -> None:
    """`path` can be written as a file (an existing file is replaced), with one of `suffixes`
    where given."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; name the file to write")
    if suffixes and path.suffix.lower() not in suffixes:
        raise UserError(f"{what} {path}: the file name must end in {' or '.join(suffixes)}")
    check_writable(path.parent, what)


def check_output_folder(folder: Path, what: str) -> None:
    """`folder` can be made (or is a folder already) and written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{what} {folder} is a file; name a folder")
    check_writable(folder, what)
