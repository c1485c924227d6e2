"""Output paths are checked before work: a folder for a file, a file for a folder, a file in
the way of a parent, a wrong suffix, an unwritable place; and the checks leave nothing behind."""

from __future__ import annotations

import pytest

from bench.errors import UserError
from bench.output_paths import check_output_file, check_output_folder, check_writable


def test_a_writable_place_passes_and_nothing_is_made(tmp_path):
    check_writable(tmp_path / "new" / "deeper", "run.root")
    check_output_file(tmp_path / "new" / "report.md", "--out", (".md",))
    check_output_folder(tmp_path / "store", "--out")
    (tmp_path / "old.md").write_text("kept")
    check_output_file(tmp_path / "old.md", "--out", (".md",))  # an existing file is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.md"]


@pytest.mark.parametrize(
    ("check", "message"),
    [
        (lambda t: check_output_file(t, "--out"), "is a folder; name the file to write"),
        (lambda t: check_output_file(t / "r.txt", "--out", (".md",)), "must end in .md"),
        (lambda t: check_output_file(t / "afile" / "r.md", "--out"), "afile is a file"),
        (lambda t: check_output_folder(t / "afile", "--store"), "--store"),
        (lambda t: check_writable(t / "afile" / "x", "run.root"), "run.root: cannot make"),
    ],
)
def test_a_bad_place_is_one_user_error_naming_the_option(tmp_path, check, message):
    (tmp_path / "afile").write_text("")
    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        check(tmp_path)
