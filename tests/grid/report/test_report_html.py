"""The HTML report as a reader gets it: no markdown syntax left as literal text (``**Table 5…**``,
``*not resolved*`` came out verbatim from the hand-written converter), every figure embedded and
its PDF a working download, raw HTML from the store escaped, and the detection tables in the
paper's order 5, 6, 7, 8. Parsed with html.parser, and rendered by Debian's headless ``chromium``
(installed where missing and possible), its visible text checked and a screenshot taken.
Runtime: ~5 s (+ ~5 s with chromium; + ~40 s the first time, to install it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from grid.report.export import markdown_to_html, write_report
from grid.store import ResultStore, load, load_trials

# Emphasis that survived as text: **bold**, *italic* or _italic_ around a word.
LITERAL_MARKDOWN = re.compile(r"\*\*|(?<![\w*])\*[^\s*][^*]*\*(?![\w*])|(?<![\w_])_[^\s_][^_]*_(?![\w_])")


def row(sample_idx: int, correct_adv: bool, attack: str, eps: float, lam, seed: int) -> dict:
    return {
        "train_eps": 0.1, "lam": lam, "seed": seed, "epochs": 2, "norm": "Linf", "sample_idx": sample_idx,
        "label": 1, "pred_clean": 1, "pred_adv": 1 if correct_adv else 3, "correct_clean": True,
        "correct_adv": correct_adv, "l2": 0.1, "l2_rms": 0.01, "linf": eps, "queries": -1, "seconds": 0.01,
        # A string from the store with markup in it: the page must show it, not run it.
        "attack_config": json.dumps({"attack": attack, "eps": eps, "note": "<script>alert(1)</script>"}),
        "checkpoint_hash": "abc", "eval_subset": "n=6,seed=0", "library_versions": '{"torch": "9.9"}',
        "gradient_failed": False, "randomized": False,
    }


def detection_rows() -> pd.DataFrame:
    """Every (fit, test) pair of PGD, FGSM and C&W for two detectors: Tables 5–8 all print."""
    rows = []
    for fit in ("pgd", "fgsm", "cw_l2"):
        for test in ("pgd", "fgsm", "cw_l2"):
            for detector in ("kd", "er1"):
                rows.append({"dataset": "digits", "detector": detector, "method": "er", "train_eps": 0.1,
                             "lam": 1.0, "seed": 0, "trial_id": "ter1", "fit_attack": fit, "fit_eps": 0.1,
                             "test_attack": test, "test_eps": 0.1, "acc_adv": 0.9, "acc_nadv": 0.8,
                             "acc_cla": 0.7, "acc_com": 0.75})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str, str]:
    """(folder, markdown, HTML) of a report over Madry and ER (two seeds each) with detection rows."""
    tmp = tmp_path_factory.mktemp("html_report")
    store = ResultStore(str(tmp / "results"))
    for method, lam in (("madry", None), ("er", 1.0)):
        for seed in (0, 1):
            for eps in (0.1, 0.2):
                rows = [row(i, (i + seed) % 3 > 0, "pgd", eps, lam, seed) for i in range(6)]
                store.write_batch(rows, experiment="e", dataset="digits", method=method,
                                  trial_id=f"t{method}{seed}", attack="pgd", eps=eps, batch=0)
    root = str(tmp / "results")
    out = tmp / "out"
    out.mkdir()
    done = write_report(load(root), load_trials(root), detection_rows(), out=out / "r.md", figures_dir=out / "figs",
                        html_path=out / "r.html", results_root=root)
    return out, done["markdown"], (out / "r.html").read_text()


class PageText(HTMLParser):
    """The text a reader sees outside ``<code>``/``<pre>``, the tags used, images and links."""

    def __init__(self):
        super().__init__()
        self.text, self.tags, self.images, self.links, self._code = [], set(), [], [], 0

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attrs = dict(attrs)
        if tag in ("code", "pre"):
            self._code += 1
        elif tag == "img":
            self.images.append(attrs)
        elif tag == "a":
            self.links.append(attrs)

    def handle_endtag(self, tag):
        if tag in ("code", "pre"):
            self._code -= 1

    def handle_data(self, data):
        if not self._code:
            self.text.append(data)


def parsed(page: str) -> PageText:
    parser = PageText()
    parser.feed(page)
    return parser


def test_no_markdown_survives_as_text_and_emphasis_is_rendered(report):
    _out, markdown, page = report
    # The report does use emphasis and bold (else this test could not fail).
    assert "**Table 5." in markdown and re.search(r"(?<![\w*])\*[^\s*][^*]*\*(?![\w*])", markdown)
    seen = parsed(page)
    text = "".join(seen.text)
    found = LITERAL_MARKDOWN.findall(text)
    assert not found, found[:5]
    assert {"strong", "em", "table", "h2"} <= seen.tags
    assert "![" not in text and "](" not in text  # no image or link syntax left either


def test_figures_are_embedded_and_their_pdfs_download(report):
    out, markdown, page = report
    seen = parsed(page)
    pngs = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", markdown)
    assert pngs and len(seen.images) == len(pngs)
    assert all(img["src"].startswith("data:image/png;base64,") for img in seen.images)
    pdfs = [a for a in seen.links if a.get("href", "").startswith("data:application/pdf;base64,")]
    assert sorted(a["download"] for a in pdfs) == sorted(Path(p).with_suffix(".pdf").name for p in pngs)
    assert "figs/" not in page  # nothing points at the files beside the report


def test_raw_html_from_the_store_is_escaped(report):
    _out, _markdown, page = report
    assert "<script>" not in page
    assert "alert(1)" in page  # shown, as text


def test_detection_tables_in_the_papers_order(report):
    _out, markdown, page = report
    numbers = [int(n) for n in re.findall(r"\*\*Table ([5-8])\.", markdown)]
    assert numbers == [5, 6, 7, 8]
    assert [int(n) for n in re.findall(r"<strong>Table ([5-8])\.", page)] == [5, 6, 7, 8]


def test_missing_figure_and_foreign_links_do_not_dangle(tmp_path):
    page = markdown_to_html("![gone](figs/gone.png) ([PDF](figs/gone.pdf)) [x](javascript:alert(1)) "
                            "[paper](https://arxiv.org/abs/1)\n", base=tmp_path)
    seen = parsed(page)
    assert "[gone: figs/gone.png not found]" in "".join(seen.text)
    assert not seen.images and [a["href"] for a in seen.links] == ["https://arxiv.org/abs/1"]
    assert 'href="javascript:' not in page  # markdown-it refuses the link: it stays inert text


REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium, installed (tools/apt_install.sh) where it is missing and can be: CI
    machines run this test. Skipped with one line only where it cannot be installed: the browser
    is external to the project, not a missing feature of it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    install = subprocess.run([str(REPO / "tools" / "apt_install.sh"), "chromium"], capture_output=True, text=True,
                             timeout=900)
    found = shutil.which("chromium")
    if install.returncode != 0 or not found:
        pytest.skip(f"an external browser, not a feature: chromium is not installed here and cannot be "
                    f"({install.stderr.strip() or 'installed, but not on PATH'})")
    return found

# Appended to a copy of the page: once it has loaded, the title becomes a JSON summary of what
# the browser drew (images decoded, visible text), which --dump-dom then prints.
PROBE = ("<script>window.addEventListener('load',()=>{const imgs=[...document.images];"
         "document.title=JSON.stringify({images:imgs.length,"
         "decoded:imgs.filter(i=>i.complete&&i.naturalWidth>0).length,"
         "text:document.body.innerText});});</script>")


def test_headless_chromium_shows_every_figure_and_no_markdown(report, tmp_path, chromium):
    out, _markdown, page = report
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--virtual-time-budget=5000", "--allow-file-access-from-files"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    title = re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
    import html

    seen = json.loads(html.unescape(title))
    assert seen["images"] > 0 and seen["decoded"] == seen["images"], seen["images"]
    assert not LITERAL_MARKDOWN.findall(seen["text"])
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *flags, "--window-size=1280,2400", f"--screenshot={shot}", (out / "r.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
