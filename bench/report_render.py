"""A report's tables and notes as markdown (tabulate's pipe tables) or LaTeX."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate


def table(
    table: pd.DataFrame, fmt: str, caption: str, reference: pd.DataFrame | None = None
) -> str:
    rows = [
        [index, *row] for index, row in zip(table.index, table.to_numpy().tolist(), strict=True)
    ]
    if reference is not None:
        reference = reference.reindex(columns=table.columns).fillna("—")
        rows += [
            [index, *row]
            for index, row in zip(reference.index, reference.to_numpy().tolist(), strict=True)
        ]
    headers = ["", *map(str, table.columns)]
    if fmt == "latex":
        body = latex_bold(tabulate(rows, headers, tablefmt="latex_raw"))
        return f"% {caption}\n" + body.replace("±", "$\\pm$").replace("_", "\\_")
    return f"**{caption}**\n\n" + tabulate(rows, headers, tablefmt="pipe", disable_numparse=True)


def latex_bold(text: str) -> str:
    parts = text.split("**")
    return "".join(part if i % 2 == 0 else f"\\textbf{{{part}}}" for i, part in enumerate(parts))


def heading(fmt: str, level: int, text: str) -> str:
    return f"% {text}" if fmt == "latex" else f"{'#' * level} {text}"


def note(fmt: str, text: str) -> str:
    return f"% {text}" if fmt == "latex" else text


def ordered(values: Any, order: Sequence[str]) -> list[str]:
    values = list(values)
    return [v for v in order if v in values] + sorted(v for v in values if v not in order)


def link(path: Path, base: Path | None) -> str:
    return str(path.relative_to(base)) if base is not None else str(path)
