"""The paper's reported numbers as reference rows beside a report's measured ones (Tables 1-3;
the meta-RL families' Table 4 is in bench/report_unseen.py)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

REFERENCE = Path(__file__).with_name("paper_reference.yaml")
# A reference row says whose numbers they are, from which table, and what differs from ours.
PAPER_LABEL = "HarmoDT paper, {table} (their data, their scale)"
SAME_SIZE_LABEL = "HarmoDT paper, {table} (their data, 1e6 steps)"  # Table 3 at our model's size
PAPER_SHAPE = (6, 8)  # Table 6's layers and heads: the model of Tables 1 and 2


def paper_source(suite: str, shape: tuple[int, int] | None = None) -> str | None:
    """Which table holds the paper's numbers for `suite` at a DT model `shape` (layers, heads):
    Table 3's row of that size where the shape is not the paper's default, else Table 1
    (mt50) or Table 2 (mt5, mt30); None where the paper has no Meta-World numbers."""
    if shape is not None and shape != PAPER_SHAPE and _size_row(suite, shape) is not None:
        layers, heads = shape
        return f"Table 3 ({layers} layer{'s' * (layers > 1)}, {heads} heads)"
    return {"mt50": "Table 1", "mt5": "Table 2", "mt30": "Table 2"}.get(suite)


def paper_rows(
    suite: str, data_order: Sequence[str], shape: tuple[int, int] | None = None
) -> pd.DataFrame | None:
    """The paper's reported rows for `suite` from the table `paper_source` names: a smaller
    model is compared with Table 3's row of its size (near-optimal only), not Tables 1-2."""
    reference = reference_tables()
    rows = {}
    source = paper_source(suite, shape)
    if source is None:
        return None
    label = PAPER_LABEL.format(table=source.split(" (")[0])
    if source.startswith("Table 3") and shape is not None:
        size = _size_row(suite, shape)
        assert size is not None
        label = SAME_SIZE_LABEL.format(table="Table 3")
        for method in ("mtdt", "prompt_dt", "harmodt_f"):
            rows[f"{method} — {label}"] = {
                data: reported(size[method] if data == "near_optimal" else None)
                for data in data_order
            } | {"params": f"{size['params_m']:.2f} M"}
    elif suite == "mt50":
        for row in reference["table1"]["rows"]:
            rows[f"{row['method']} — {label}"] = {
                data: reported(row.get(data)) for data in data_order
            } | {"params": f"{row['params_m']:.2f} M"}
    elif suite in ("mt5", "mt30"):
        for row in reference["table2"]["rows"]:
            rows[f"{row['method']} — {label}"] = {
                data: reported(row[suite].get(data)) for data in data_order
            } | {"params": "—"}
    return pd.DataFrame.from_dict(rows, orient="index") if rows else None


class PaperNumber(float):
    """A number of the paper's, which keeps the digits it was printed with (`0.9` is not shown
    as `0.90`, nor `0.40` as `0.4`)."""

    text: str

    def __new__(cls, text: str) -> PaperNumber:
        number = super().__new__(cls, float(text))
        number.text = text
        return number


class _PaperLoader(yaml.SafeLoader):
    """YAML's floats as `PaperNumber`s, from their text in paper_reference.yaml."""


_PaperLoader.add_constructor(
    "tag:yaml.org,2002:float", lambda loader, node: PaperNumber(loader.construct_scalar(node))
)


@functools.cache
def reference_tables() -> dict[str, Any]:
    """paper_reference.yaml, its floats as the paper printed them (`PaperNumber`)."""
    return yaml.load(REFERENCE.read_text(), Loader=_PaperLoader)


def printed(value: float, digits: int = 2) -> str:
    """A paper's number with its printed digits; any other with `digits` decimals."""
    return value.text if isinstance(value, PaperNumber) else f"{value:.{digits}f}"


def _size_row(suite: str, shape: tuple[int, int]) -> dict | None:
    table3 = reference_tables()["table3"]["rows"]
    matches = [r for r in table3 if r["suite"] == suite and (r["layers"], r["heads"]) == shape]
    return matches[0] if matches else None


def reported(value: list[float] | None) -> str:
    return "—" if value is None else f"{printed(value[0])} ± {printed(value[1])}"
