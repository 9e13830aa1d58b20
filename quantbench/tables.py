"""What every report table shares: the cell key, how a failed row, a cache hit and a mean over
repeats are shown, one scenario's rows as a table, and CSV / Markdown / HTML output. The
scenario modules (quantbench.scenarios), the quality report and quantbench.report build on it;
it imports none of them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from quantbench.io import atomic_write_text
from quantbench.status import CELL_COLUMNS, CellKey, Status

CELL_KEYS = CELL_COLUMNS

# The workload of a load run (serving, engine_client), and how much of it completed.
WORKLOAD_COLUMNS = [
    "request_rate",
    "max_concurrency",
    "num_prompts",
    "input_len",
    "output_len",
    "completed",
]


def cell_of(prov: dict) -> dict:
    return CellKey.of(prov)._asdict()


def cache_hits(rows: pd.DataFrame) -> int:
    """Requests with a cache hit: batch-1 rows flag their own (`cache_hit`), load rows count
    theirs (`cache_hits`)."""
    hit = rows.get("cache_hit", pd.Series(False, rows.index)).fillna(False).astype(bool).sum()
    return int(hit + rows.get("cache_hits", pd.Series(0, rows.index)).fillna(0).sum())


def cache_cell(group: pd.DataFrame) -> str:
    """The engine's cached prompt tokens over a cell's requests, as a table shows them: the
    total (0 for a cache-free cell), a hit marked with how many requests it touched, or
    "not reported" where the engine gave no count. Rows with hits are never averaged in
    silently: this column travels with every figure built from them."""
    if "cached_tokens" not in group:
        return "not reported"
    counts = group["cached_tokens"]
    hits = cache_hits(group)
    total = int(counts.fillna(0).sum())
    text = f"{total}" if counts.notna().any() else "not reported"
    if counts.isna().any() and counts.notna().any():
        text += f" ({int(counts.isna().sum())} not reported)"
    if hits:
        text = f"CACHE HIT: {total} tokens in {hits} of {len(group)} requests"
    return text


def mean_with_spread(mean: float, sd: float, repeats: int) -> str:
    """Mean ± sample standard deviation over repeats; one repeat has no spread to show (a
    "± 0.00" would claim a measured one)."""
    return f"{mean:.2f} ± {sd:.2f}" if repeats > 1 else f"{mean:.2f}"


def short_reason(reason) -> str:
    """The first line of a failure's reason, for a table cell (the result file keeps it all)."""
    return str(reason or "").strip().splitlines()[0][:200] if reason else ""


def status_or(row: pd.Series, value: str) -> str:
    """`value` for an ok row; otherwise its status, reason and log."""
    if row["status"] == Status.OK:
        return value
    text = f"{row['status']}: {short_reason(row.get('reason'))}"
    log = row.get("log")
    if isinstance(log, str) and log and log not in text:
        text += f" (log: {log})"
    return text


def scenario_table(cells: pd.DataFrame, scenario: str, columns: list[str]) -> pd.DataFrame:
    """One row per measured row of a scenario (serving: one per cell; batch: per batch size)."""
    rows = cells[cells["scenario"] == scenario] if "scenario" in cells else cells.iloc[:0]
    if rows.empty:
        return pd.DataFrame(columns=CELL_KEYS + columns)
    table = rows.reindex(columns=CELL_KEYS + columns + ["reason"]).copy()
    for col in columns:
        if pd.api.types.is_float_dtype(table[col]):
            table[col] = table[col].round(2)
    table.loc[table["status"] != Status.OK, "status"] = [
        status_or(r, "") for _, r in table[table["status"] != Status.OK].iterrows()
    ]
    if "cached_tokens" in columns:  # a load run that hit the cache says so in its status
        hit = rows.get("cache_hits", pd.Series(0, rows.index)).fillna(0) > 0
        table.loc[hit, "status"] = table.loc[hit, "status"].astype(str) + " (cache hit)"
        if "cached_tokens" in rows:
            table["cached_tokens"] = rows["cached_tokens"].map(
                lambda c: "not reported" if pd.isna(c) else int(c)
            )
    return table.drop(columns="reason").fillna("")


def write_table(df: pd.DataFrame, stem: Path, title: str, html: str | None = None) -> None:
    """CSV, Markdown and HTML of one table (`html`: the table's own, where it has one)."""
    atomic_write_text(stem.with_suffix(".csv"), df.to_csv(index=False))
    md = f"# {title}\n\n" + (df.to_markdown(index=False) if not df.empty else "_no rows_") + "\n"
    atomic_write_text(stem.with_suffix(".md"), md)
    if html is None:
        html = df.to_html(index=False, na_rep="", border=0, classes="qb-table")
    atomic_write_text(stem.with_suffix(".html"), f"<h2>{title}</h2>\n{html}\n")


DECOMPRESSED_MARK = "DECOMPRESSED: dense memory, not the format's"


def weights_mark(paths: pd.Series | None) -> str:
    """In which form the weights were while memory was measured (the Transformers engine's
    load path per request): a decompressed quantized model holds the dense model's memory, so
    the mark says so; empty where the engine does not report it."""
    seen = set() if paths is None else set(paths.dropna())
    if "decompressed" in seen:
        return DECOMPRESSED_MARK
    return ", ".join(sorted(seen))
