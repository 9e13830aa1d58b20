"""The report's one self-contained page, results/report/index.html: the headline tables styled and
sortable, quality flags as short codes with a legend (full text on hover), failed and unsupported
cells marked, the plots embedded as data URIs. Built from the files the aggregate step already
wrote (``<table>.csv``, ``<table>.md`` for its title, the PNG plots), so it also rebuilds from a
finished results directory (``quantbench report``)."""

from __future__ import annotations

import base64
import html
import math
import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from quantbench.io import atomic_write_text
from quantbench.status import CELL_COLUMNS, Status

# (csv stem, shown open) of the tables besides the scenarios' (quantbench.scenarios declares
# those, and which of them are headline tables): the headline tables first, the rest folded.
QUALITY_TABLES = [("gate", True), ("frontier", True), ("quality", True), ("published", True)]
OTHER_TABLES = [("engine", False), ("checkpoints", False)]
FRONTIER_PLOT = ("frontier.png", "Quality / speed / memory frontier")


def report_sections() -> tuple[list, list]:
    """(csv stem, shown open) of every table and (file, title) of every plot, in page order."""
    from quantbench.scenarios import report_plots, report_tables

    scenario = [(t.name, t.headline) for _, t in report_tables()]
    tables = [t for t in scenario if t[1]] + QUALITY_TABLES + [t for t in scenario if not t[1]]
    plots = [(p.file, p.title) for _, p in report_plots()]
    return tables + OTHER_TABLES, plots[:1] + [FRONTIER_PLOT] + plots[1:]


FAIL = re.compile(r"^(failed|error|timeout|oom|collapse)\b", re.I)
NOT_RUN = re.compile(r"^(unsupported|not_applicable|not applicable|skipped)\b", re.I)
WARN = re.compile(r"^(inconclusive|evaluation suspect|suspect)\b", re.I)
GOOD = re.compile(r"^(pass)\b", re.I)
# quality.json's flags all start with their source (quantbench/evaluate.py: cell_flags); a
# flag's own text may hold "; ", so the joined column splits only before a source.
FLAG_SPLIT = re.compile(r";\s+(?=(?:preflight|postrun):\s)")
FLAG_PREFIX = {"preflight": "P", "postrun": "R"}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2430;
background:#f6f7f9}
header{background:#1d2a44;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header .meta{opacity:.85;font-size:13px}main{padding:8px 28px 40px;max-width:1600px}
h2{margin:28px 0 8px;font-size:18px}section>p.note{margin:4px 0 8px;color:#555}
.wrap{overflow-x:auto;background:#fff;border:1px solid #d9dde4;border-radius:6px}
table.qb{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
table.qb th,table.qb td{padding:5px 9px;border-bottom:1px solid #eceef2;text-align:left;
white-space:nowrap;vertical-align:top}
table.qb th{background:#eef1f6;position:sticky;top:0;cursor:pointer;user-select:none}
table.qb th:hover{background:#dfe5ee}table.qb th[aria-sort=ascending]::after{content:" \\25B2"}
table.qb th[aria-sort=descending]::after{content:" \\25BC"}
table.qb tr:hover td{background:#f3f7ff}td.num{text-align:right}
.st-fail{background:#fde2e1;color:#8a1c17;font-weight:600}
.st-na{background:#eceef1;color:#5b6270;font-style:italic}
.st-warn{background:#fff4d6;color:#7a5600}.st-good{background:#e3f6e7;color:#1d6b34}
.badge{display:inline-block;padding:0 6px;margin:0 3px 0 0;border-radius:9px;font-size:12px;
background:#6b4fbb;color:#fff;cursor:help}.badge.R{background:#c2570c}
.legend td:first-child{width:60px}details{margin:10px 0}summary{cursor:pointer;font-weight:600;
font-size:16px;padding:6px 0}figure{margin:12px 0;background:#fff;border:1px solid #d9dde4;
border-radius:6px;padding:10px}figure img{max-width:100%;height:auto}
.key span{display:inline-block;padding:1px 8px;margin-right:8px;border-radius:4px;font-size:12px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}.card{background:#fff;
border:1px solid #d9dde4;border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:20px}.card.bad b{color:#b42318}
"""

# Click a header to sort; numbers (also "12.3 ± 0.4") numerically, blanks last.
JS = """
document.querySelectorAll('table.qb').forEach(function(t){
 t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
  var asc=th.getAttribute('aria-sort')!=='ascending';
  t.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort')});
  th.setAttribute('aria-sort',asc?'ascending':'descending');
  var rows=Array.from(t.tBodies[0].rows);
  function key(r){var c=r.cells[i];var v=c?(c.dataset.v!==undefined?c.dataset.v:c.textContent):'';
   var n=parseFloat(v);return {e:v.trim()==='',n:isNaN(n)?null:n,s:v};}
  rows.sort(function(a,b){var x=key(a),y=key(b);if(x.e!==y.e)return x.e?1:-1;
   var d=(x.n!==null&&y.n!==null)?x.n-y.n:x.s.localeCompare(y.s,undefined,{numeric:true});
   return asc?d:-d;});
  rows.forEach(function(r){t.tBodies[0].appendChild(r)});});});});
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    return str(value)


IDENTITY = ("model", "engine", "quantization", "task", "input_len")


def cell_class(text: str) -> str:
    for cls, pattern in (("st-fail", FAIL), ("st-na", NOT_RUN), ("st-warn", WARN)):
        if pattern.match(text):
            return cls
    return "st-good" if GOOD.match(text) else ""


def split_flags(joined: str) -> list[str]:
    return [f.strip() for f in FLAG_SPLIT.split(joined or "") if f.strip()]


class FlagCodes:
    """Short codes for flag texts, numbered per source in order of first appearance (P1: a
    preflight warning, R1: a post-run check), shared by every table of the page."""

    def __init__(self):
        self.codes: dict[str, str] = {}

    def code(self, flag: str) -> str:
        if flag not in self.codes:
            source = flag.split(":", 1)[0]
            prefix = FLAG_PREFIX.get(source, "F")
            n = sum(c.startswith(prefix) for c in self.codes.values()) + 1
            self.codes[flag] = f"{prefix}{n}"
        return self.codes[flag]

    def badges(self, joined: str) -> str:
        return " ".join(
            f'<span class="badge {self.code(f)[0]}" title="{esc(f)}">{self.code(f)}</span>'
            for f in split_flags(joined)
        )

    def legend(self) -> str:
        if not self.codes:
            return ""
        rows = "".join(
            f"<tr><td><span class='badge {c[0]}'>{c}</span></td><td>{esc(f)}</td></tr>"
            for f, c in self.codes.items()
        )
        return (
            "<section id='flags'><h2>Flag legend</h2><p class='note'>P: preflight warning "
            "(before the run), R: post-run check over its threshold. Hover a code for its text."
            "</p><div class='wrap'><table class='qb legend'><thead><tr><th>code</th>"
            f"<th>flag</th></tr></thead><tbody>{rows}</tbody></table></div></section>"
        )


def table_html(df: pd.DataFrame, flags: FlagCodes | None = None, table_id: str = "") -> str:
    """A sortable table: empty columns dropped, long text cut with its full text on hover,
    failed/unsupported/verdict cells classed, a `flags` column as code badges."""
    df = df.loc[:, [c for c in df.columns if df[c].map(_text).str.strip().ne("").any()]]
    if "verdict" in df.columns:  # the verdict beside the cell it judges, not off-screen
        keys = [c for c in df.columns if c in IDENTITY]
        rest = [c for c in df.columns if c not in IDENTITY and c != "verdict"]
        df = df[keys + ["verdict"] + rest]
    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        tds = []
        for col, value in zip(df.columns, row):
            text = _text(value)
            if col == "flags" and flags is not None:
                codes = " ".join(flags.code(f) for f in split_flags(text))
                tds.append(f'<td data-v="{codes}">{flags.badges(text)}</td>')
                continue
            cls = cell_class(text)
            num = isinstance(value, (int, float)) and not isinstance(value, bool)
            classes = " ".join(filter(None, [cls, "num" if num else ""]))
            attr = f' class="{classes}"' if classes else ""
            if len(text) > 70:
                shown = esc(text[:67]) + "…"
                tds.append(f'<td{attr} title="{esc(text)}" data-v="{esc(text)}">{shown}</td>')
            else:
                tds.append(f"<td{attr}>{esc(text)}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return (
        f'<div class="wrap"><table class="qb"{ident}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def data_uri(path: Path) -> str:
    kind = {".png": "image/png", ".svg": "image/svg+xml"}[path.suffix]
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


def page(title: str, meta: str, body: str) -> str:
    key = (
        "<p class='key'><span class='st-fail'>failed / collapse</span>"
        "<span class='st-na'>unsupported / skipped</span><span class='st-warn'>inconclusive"
        "</span><span class='st-good'>pass</span> Click a column header to sort.</p>"
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><div class='meta'>{meta}</div></header>"
        f"<main>{key}{body}</main><script>{JS}</script></body></html>\n"
    )


def _title(report: Path, stem: str) -> str:
    md = report / f"{stem}.md"
    if md.exists():
        first = md.read_text().splitlines()[:1]
        if first and first[0].startswith("# "):
            return first[0][2:].strip()
    return stem


def _read(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return None


def _summary(report: Path) -> tuple[str, str]:
    cells = _read(report / "requests.csv")
    if cells is None:  # a report written before requests.csv was named so
        cells = _read(report / "cells.csv")
    if cells is None or cells.empty:
        return "", ""
    parts = []
    for col, label in (("model", "models"), ("quantization", "quantizations"),
                       ("engine", "engines"), ("engine_version", "engine versions"),
                       ("device_name", "devices")):
        if col in cells:
            values = sorted({str(v) for v in cells[col].dropna()})
            parts.append(f"{label}: {esc(', '.join(values))}")
    keys = [c for c in CELL_COLUMNS if c in cells]
    per_cell = cells.groupby(keys)["status"].apply(lambda s: (s == Status.OK).any())
    status = cells.get("status", pd.Series(dtype=str)).astype(str)
    cards = [
        ("cells", len(per_cell), ""),
        ("cells with no successful row", int((~per_cell).sum()), "bad"),
        ("measured rows", len(cells), ""),
        ("failed rows", int(status.str.match(FAIL).sum()), "bad"),
        ("unsupported / skipped rows", int(status.str.match(NOT_RUN).sum()), ""),
    ]
    html_cards = "".join(
        f"<div class='card {cls if n else ''}'><b>{n}</b>{esc(label)}</div>"
        for label, n, cls in cards
    )
    return " · ".join(parts), f"<div class='cards'>{html_cards}</div>"


def build_index(report_dir: str | Path, title: str = "quantbench report") -> str:
    report = Path(report_dir)
    meta, cards = _summary(report)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta = f"{meta}<br>built {stamp}" if meta else f"built {stamp}"
    flags = FlagCodes()
    sections, toc = [cards], []
    tables, plots = report_sections()
    for stem, open_ in tables:
        df = _read(report / f"{stem}.csv")
        if df is None:
            continue
        title_ = _title(report, stem)
        toc.append(f"<a href='#{stem}'>{esc(stem)}</a>")
        inner = table_html(df, flags, f"t-{stem}") if len(df) else "<p class='note'>no rows</p>"
        if open_:
            sections.append(f"<section id='{stem}'><h2>{esc(title_)}</h2>{inner}</section>")
        else:
            sections.append(
                f"<details id='{stem}'><summary>{esc(title_)} ({len(df)} rows)</summary>"
                f"{inner}</details>"
            )
    for name, caption in plots:
        path = report / name
        if path.exists():
            stem = f"plot-{path.stem}"
            toc.append(f"<a href='#{stem}'>{esc(path.stem)} plot</a>")
            sections.append(
                f"<figure id='{stem}'><img src='{data_uri(path)}' alt='{esc(caption)}'>"
                f"<figcaption>{esc(caption)}</figcaption></figure>"
            )
    sections.append(flags.legend())
    nav = "<nav>" + " · ".join(toc) + "</nav>" if toc else ""
    return page(title, meta, nav + "".join(sections))


def write_index(report_dir: str | Path, title: str = "quantbench report") -> Path:
    """Write ``<report_dir>/index.html`` from the tables and plots already there."""
    path = Path(report_dir) / "index.html"
    atomic_write_text(path, build_index(report_dir, title))
    return path
