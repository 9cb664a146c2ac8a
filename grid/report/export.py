"""The report as files to hand on: markdown with linked figures, one self-contained HTML file,
and machine-readable JSON records.

- :func:`write_report`: what ``er-grid report`` does: figures (Figures 3/4 and the t-SNE
  Figures 5/6) into a folder, the markdown linking them (links relative to the markdown file),
  optionally the HTML and JSON files. Every file is written atomically.
- :func:`markdown_to_html`: the markdown rendered by markdown-it-py (CommonMark and tables), with
  every figure and its PDF embedded as base64, so one file carries the whole report (no other
  file, no network).
- :func:`json_records`: one record per (dataset, method, λ, training ε, attack, ε) in the
  spirit of RobustBench's model-info files: the accuracies in %, n, runs, completeness, and the
  settings behind them (attack configuration, evaluation subset, seeds, epochs, checkpoint
  hashes, code and library versions), all read from the rows.
"""

from __future__ import annotations

import base64
import json
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
# Local files a self-contained page can carry as data URIs: the figures (shown) and their PDFs
# (a download link), so nothing the markdown links to dangles once the page travels alone.
EMBEDDED_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml",
                  ".pdf": "application/pdf"}
# Links that still work away from this machine; every other target is a file beside the report.
KEPT_SCHEMES = ("http://", "https://", "mailto:")


def markdown_to_html(text: str, base: Path) -> str:
    """The report's markdown as one self-contained HTML page (CommonMark plus tables, rendered
    by markdown-it-py rather than by hand, so emphasis, lists and escapes follow the spec).

    Images and links to local files (relative to ``base``) are embedded as base64 data URIs:
    the figures show, their PDFs download. A link to a local file that is missing, or of a kind
    not embedded, keeps its text and loses the link. Raw HTML in the markdown is escaped, never
    passed through: the report quotes strings read from the store (attack configurations,
    sanity evidence), and a store others can write must not inject markup into the page.
    """
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(text)
    for token in tokens:
        for child in token.children or ():
            if child.type == "image":
                _embed_image(child, base)
        if token.children:
            token.children = _embed_links(token.children, base)
    body = md.renderer.render(tokens, md.options, {})
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>ER-Grid results</title>"
            f"<style>{STYLE}</style></head><body>\n{body}</body></html>\n")


def _local_file(target: str, base: Path) -> Optional[Path]:
    """The file a relative or absolute link target names, or None for a URL or a missing file."""
    if not target or ":" in target.split("/", 1)[0]:
        return None  # a scheme (http:, data:, javascript:, …): not a file beside the report
    path = Path(target) if Path(target).is_absolute() else Path(base) / target
    return path if path.is_file() else None


def _data_uri(path: Path) -> Optional[str]:
    kind = EMBEDDED_TYPES.get(path.suffix.lower())
    if kind is None:
        return None
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _embed_image(token, base: Path) -> None:
    src = token.attrGet("src") or ""
    path = _local_file(src, base)
    uri = _data_uri(path) if path is not None else None
    if uri is None:
        # Said in the page instead of a broken image: which file is missing.
        token.type, token.tag, token.content, token.children = "text", "", f"[{token.content}: {src} not found]", None
        token.attrs = {}
        return
    token.attrSet("src", uri)


def _embed_links(children: list, base: Path) -> list:
    """``children`` with each local link embedded (``download`` keeps its file name) or, where
    it cannot travel, dropped to its text; URLs of :data:`KEPT_SCHEMES` stay as they are."""
    out, dropping = [], []
    for token in children:
        if token.type == "link_open":
            href = token.attrGet("href") or ""
            path = _local_file(href, base)
            uri = _data_uri(path) if path is not None else None
            keep = uri is not None or href.startswith(KEPT_SCHEMES)
            dropping.append(not keep)
            if uri is not None:
                token.attrSet("href", uri)
                token.attrSet("download", path.name)
            if keep:
                out.append(token)
            continue
        if token.type == "link_close":
            if not dropping.pop():
                out.append(token)
            continue
        out.append(token)
    return out
