"""The paper's reference rows: which table a report's cohort is compared with."""

from bench.report_reference import paper_rows, paper_source

TABLE_2 = "HarmoDT paper, Table 2 (their data, their scale)"
TABLE_3 = "HarmoDT paper, Table 3 (their data, 1e6 steps)"  # our model's size: Table 3's row

DATA = ["near_optimal", "sub_optimal"]


def test_a_small_model_is_compared_with_table_3s_row_of_its_size() -> None:
    assert paper_source("mt30", (1, 2)) == "Table 3 (1 layer, 2 heads)"
    rows = paper_rows("mt30", DATA, (1, 2))
    assert rows is not None
    assert list(rows.index) == [f"{m} — {TABLE_3}" for m in ("mtdt", "prompt_dt", "harmodt_f")]
    assert rows.loc[f"harmodt_f — {TABLE_3}", "near_optimal"] == "59.33 ± 1.5"  # its digits
    assert rows.loc[f"mtdt — {TABLE_3}", "sub_optimal"] == "—"  # Table 3 is near-optimal only
    assert rows.loc[f"prompt_dt — {TABLE_3}", "params"] == "0.48 M"
    assert paper_source("mt50", (3, 4)) == "Table 3 (3 layers, 4 heads)"


def test_the_paper_size_or_a_size_table_3_lacks_keeps_tables_1_and_2() -> None:
    assert paper_source("mt30", (6, 8)) == "Table 2"  # Table 3's 6-layer row is Table 2's
    assert paper_source("mt30", None) == "Table 2"
    assert paper_source("mt5", (1, 2)) == "Table 2"  # Table 3 has no MT5 rows
    assert paper_source("mt50", (2, 2)) == "Table 1"
    assert paper_source("cheetah_vel", (1, 2)) is None
    rows = paper_rows("mt30", DATA, (6, 8))
    assert rows is not None
    assert rows.loc[f"harmodt_f — {TABLE_2}", "near_optimal"] == "88.00 ± 0.96"
    assert len(rows) == 6  # MTDIFF and the five methods
