"""The report as files to hand on: markdown with linked figures, one self-contained HTML file,
and machine-readable JSON records.

- :func:`write_report`: what ``er-grid report`` does: figures (Figures 3/4 and the t-SNE
  Figures 5/6) into a folder, the markdown linking them (links relative to the markdown file),
  optionally the HTML and JSON files. Every file is written atomically.
- :func:`markdown_to_html`: the report's own markdown subset (headings, tables, lists, images,
  paragraphs, inline code) to HTML, with every image embedded as base64, so one file carries the
  whole report (no other file, no network).
- :func:`json_records`: one record per (dataset, method, λ, training ε, attack, ε) in the
  spirit of RobustBench's model-info files: the accuracies in %, n, runs, completeness, and the
  settings behind them (attack configuration, evaluation subset, seeds, epochs, checkpoint
  hashes, code and library versions), all read from the rows.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Optional

import pandas as pd

from grid.common.files import write_text_atomic
from grid.store.flags import flags_from_frames

from .formatting import json_or_text
from .markdown import report_markdown
from .metrics import ACC_BY, WORST_CASE, robust_accuracy
from .names import dataset_name, method_name
from .query import attacks_covered, with_completeness
from .sanity import headline_rows


def write_report(df: pd.DataFrame, trials_df, det_df, out: Optional[Path] = None, figures_dir: Optional[Path] = None,
                 html_path: Optional[Path] = None, json_path: Optional[Path] = None, results_root=None,
                 notes_df: Optional[pd.DataFrame] = None) -> dict:
    """Write the report files; returns ``{"markdown": text, "written": [paths]}``.

    df/trials_df/det_df: example, trial and detection rows; out: markdown file (None: only the
    text is returned); figures_dir: folder for the figures (None: no figures; the HTML then
    has none either); results_root: the store, for the t-SNE figures' code table; notes_df: the
    attacks' notes (``grid.store.load_notes``) for the flags that read them.
    """
    written: list[Path] = []
    figures: list[Path] = []
    flags = flags_from_frames(df, trials_df, notes_df)  # once, for the figures and the markdown alike
    if figures_dir is not None:
        from .embedding_figure import write_embedding_figures
        from .figures import write_figures

        # The figures leave collapsed trials out, as the report's tables do.
        figures = write_figures(headline_rows(df, flags), figures_dir)
        if results_root is not None:
            figures += write_embedding_figures(results_root, figures_dir)
        written += figures
    links_from = Path(out).parent if out is not None else Path.cwd()
    text = report_markdown(df, trials_df, det_df, figures=figures, links_from=links_from, flags=flags,
                           notes_df=notes_df)
    if out is not None:
        written.append(write_text_atomic(Path(out), text))
    if html_path is not None:
        page = markdown_to_html(text, base=links_from)
        written.append(write_text_atomic(Path(html_path), page))
    if json_path is not None:
        records = json_records(df)
        written.append(write_text_atomic(Path(json_path), json.dumps(records, indent=1, sort_keys=False) + "\n"))
    return {"markdown": text, "written": written}


# --------------------------------------------------------------------------- JSON records


def json_records(df: pd.DataFrame) -> list[dict]:
    """One dict per (dataset, method, λ, train ε, attack, ε), worst case included; accuracies in %."""
    acc = with_completeness(robust_accuracy(df, by=ACC_BY))
    acc["attacks"] = attacks_covered(df, acc, list(ACC_BY))
    records = []
    for row in acc.itertuples(index=False):
        mine = df[_same_config(df, row) & ((df["attack"] == row.attack) if row.attack != WORST_CASE else True)]
        mine = mine[(mine["eps"] == row.eps) & (mine["norm"] == row.norm)]
        records.append({
            "dataset": row.dataset, "dataset_name": dataset_name(row.dataset),
            "method": row.method, "method_name": method_name(row.method),
            "lam": _number(row.lam), "train_eps": _number(row.train_eps),
            "threat_model": row.norm, "attack": row.attack, "eps": float(row.eps),
            "attacks": row.attacks.split(",") if row.attacks else [],
            "clean_acc": _percent(row.clean_accuracy), "robust_acc": _percent(row.robust_accuracy),
            "robust_acc_std": _percent(row.robust_std),
            # 95% intervals (grid.report.intervals): over the examples (Wilson), over the runs (t).
            "robust_acc_ci95": [_percent(row.robust_lo), _percent(row.robust_hi)],
            "robust_acc_seed_ci95": None if pd.isna(row.seed_lo) else [_percent(row.seed_lo), _percent(row.seed_hi)],
            "runs": int(row.runs), "n": int(row.n),
            "n_planned": None if pd.isna(row.n_planned) else int(row.n_planned),
            "complete": None if pd.isna(row.complete) else bool(row.complete),
            "seeds": sorted(int(s) for s in mine["seed"].unique()),
            "epochs": sorted(int(e) for e in mine["epochs"].unique()),
            "trial_ids": sorted(mine["trial_id"].unique().tolist()),
            **{column: _distinct(mine, column) for column in
               ("attack_config", "eval_subset", "checkpoint_hash", "code_version", "library_versions")},
        })
    return records


def _same_config(df: pd.DataFrame, row) -> pd.Series:
    mask = (df["dataset"] == row.dataset) & (df["method"] == row.method)
    for column in ("lam", "train_eps"):
        value = getattr(row, column)
        mask &= df[column].isna() if pd.isna(value) else (df[column] == value)
    return mask


def _distinct(df: pd.DataFrame, column: str) -> list:
    if column not in df.columns:
        return []
    values = sorted(df[column].dropna().unique().tolist())
    if column in ("attack_config", "library_versions"):
        return [json_or_text(v) for v in values]
    return values


def _number(value) -> Optional[float]:
    return None if value is None or pd.isna(value) else float(value)


def _percent(value) -> Optional[float]:
    return None if value is None or pd.isna(value) else round(100.0 * float(value), 2)


# --------------------------------------------------------------------------- HTML


STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;line-height:1.4}"
         "table{border-collapse:collapse;margin:1em 0;font-size:90%}th,td{border:1px solid #bbb;padding:2px 6px}"
         "th{background:#eee}img{max-width:100%}code{background:#f4f4f4;padding:0 2px}")
IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)]+)\)")
LINK = re.compile(r"\[([^\]]+)\]\(([^)]+)\)")


def markdown_to_html(text: str, base: Path) -> str:
    """The report's markdown as one self-contained HTML page; images (relative to ``base``)
    are embedded as base64 data URIs, links to other files (the PDFs) are dropped."""
    body, table, items, paragraph = [], [], [], []

    def flush():
        if table:
            body.append(_table_html(table))
            table.clear()
        if items:
            body.append("<ul>" + "".join(f"<li>{_inline(i, base)}</li>" for i in items) + "</ul>")
            items.clear()
        if paragraph:
            body.append(f"<p>{_inline(' '.join(paragraph), base)}</p>")
            paragraph.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|"):
            if paragraph or items:
                flush()
            table.append(stripped)
            continue
        if table:
            flush()
        heading = re.match(r"^(#{1,6}) (.*)$", stripped)
        if heading:
            flush()
            level = len(heading.group(1))
            body.append(f"<h{level}>{_inline(heading.group(2), base)}</h{level}>")
        elif stripped.startswith("- "):
            if paragraph:
                flush()
            items.append(stripped[2:])
        elif not stripped:
            flush()
        else:
            paragraph.append(stripped)
    flush()
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>ER-Grid results</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _table_html(lines: list[str]) -> str:
    rows = [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in lines]
    rows = [r for r in rows if not all(set(c) <= {"-", " "} and c for c in r)]  # the --- separator
    head, *rest = rows
    cells = "".join(f"<th>{html.escape(c.replace(chr(92) + '|', '|'))}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c.replace(chr(92) + '|', '|'))}</td>" for c in r) + "</tr>"
                   for r in rest)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _inline(text: str, base: Path) -> str:
    out, last = [], 0
    for match in IMAGE.finditer(text):
        out.append(_plain_inline(text[last:match.start()]))
        out.append(_image_html(match.group(1), match.group(2), base))
        last = match.end()
    out.append(_plain_inline(text[last:]))
    return "".join(out)


def _plain_inline(text: str) -> str:
    text = LINK.sub(lambda m: m.group(1), text)  # links to files beside the report do not travel
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"(?<![\w])_([^_]+)_(?![\w])", r"<em>\1</em>", text)


def _image_html(alt: str, src: str, base: Path) -> str:
    path = Path(src) if Path(src).is_absolute() else Path(base) / src
    kind = {".png": "image/png", ".jpg": "image/jpeg", ".svg": "image/svg+xml"}.get(path.suffix.lower())
    if kind is None or not path.is_file():
        return html.escape(f"[{alt}: {src} not found]")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:{kind};base64,{data}">'


