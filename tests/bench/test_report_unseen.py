"""The paper's Table 4 rows beside a report's unseen-task table."""

from __future__ import annotations

from bench.report_unseen import MEAN_COLUMN, paper_rows


def test_table_4s_rows_keep_the_digits_the_paper_printed():
    rows = paper_rows("cheetah_vel", "HarmoDT paper, Table 4", [MEAN_COLUMN])
    assert rows is not None
    shown = rows[MEAN_COLUMN].to_dict()
    assert shown == {
        "mtdt — HarmoDT paper, Table 4": "-170.11 ± 5.7",
        "prompt_dt — HarmoDT paper, Table 4": "-127.7 ± 9.9",
        "harmodt_f — HarmoDT paper, Table 4": "-66.51 ± 1.2",
    }
    assert paper_rows("mt30", "HarmoDT paper, Table 4", [MEAN_COLUMN]) is None
