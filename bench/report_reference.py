"""The paper's reported numbers as reference rows beside a report's measured ones (Tables 1-2;
the meta-RL families' Table 4 is in bench/report_unseen.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml

REFERENCE = Path(__file__).with_name("paper_reference.yaml")
PAPER_LABEL = "paper (their data, their scale)"


def paper_rows(suite: str, data_order: Sequence[str]) -> pd.DataFrame | None:
    """The paper's reported rows for a suite (Table 1 for mt50, Table 2 for mt5 / mt30)."""
    reference = yaml.safe_load(REFERENCE.read_text())
    rows = {}
    if suite == "mt50":
        for row in reference["table1"]["rows"]:
            rows[f"{row['method']} — {PAPER_LABEL}"] = {
                data: reported(row.get(data)) for data in data_order
            } | {"params": f"{row['params_m']:.2f} M"}
    elif suite in ("mt5", "mt30"):
        for row in reference["table2"]["rows"]:
            rows[f"{row['method']} — {PAPER_LABEL}"] = {
                data: reported(row[suite].get(data)) for data in data_order
            } | {"params": "—"}
    return pd.DataFrame.from_dict(rows, orient="index") if rows else None


def reported(value: list[float] | None) -> str:
    return "—" if value is None else f"{value[0]:.2f} ± {value[1]:.2f}"
