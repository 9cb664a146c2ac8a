"""``er-grid report`` files without Ray: markdown that links its figures and ends with the
settings, one self-contained HTML page, one JSON record per configuration × attack × ε.
Hand-written store; runtime ~4 s (two 300-dpi figures)."""

from __future__ import annotations

import json
import re

from grid.cli import main
from grid.store import ResultStore


def row(sample_idx: int, correct_adv: bool, attack: str, eps: float, lam) -> dict:
    return {
        "train_eps": None, "lam": lam, "seed": 0, "epochs": 2, "norm": "Linf", "sample_idx": sample_idx,
        "label": 1, "pred_clean": 1, "pred_adv": 1 if correct_adv else 3, "correct_clean": True,
        "correct_adv": correct_adv, "l2": 0.1, "l2_rms": 0.01, "linf": eps, "queries": -1, "seconds": 0.01,
        "attack_config": json.dumps({"attack": attack, "eps": eps, "steps": 7}), "checkpoint_hash": "abc",
        "eval_subset": "n=4,seed=0", "library_versions": '{"torch": "9.9"}', "gradient_failed": False,
        "randomized": False,
    }


def test_report_files_link_embed_and_record(tmp_path, capsys):
    root = tmp_path / "results"
    store = ResultStore(str(root))
    for method, lam in (("e_cla", None), ("er_minus", 5.0)):
        for attack in ("pgd", "fgsm"):
            for eps in (0.1, 0.2):
                rows = [row(i, i < 2, attack, eps, lam) for i in range(4)]
                store.write_batch(rows, experiment="e", dataset="digits", method=method, trial_id=f"t{method}",
                                  attack=attack, eps=eps, batch=0)
    out = tmp_path / "out"
    assert main(["report", str(root), "--out", str(out / "r.md"), "--figures", str(out / "figs"),
                 "--html", str(out / "r.html"), "--json", str(out / "r.json")]) == 0
    text = (out / "r.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links == ["figs/figure3.png", "figs/figure4.png"] and all((out / link).is_file() for link in links)
    assert text.rstrip().split("\n## ")[-1].startswith("Settings")  # the settings close the report
    assert "steps=7" in text and "n=4,seed=0" in text and "torch 9.9" in text

    page = (out / "r.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2 and "figs/" not in page
    assert "<table>" in page and "50.0 (15.0–85.0) [n=4]" in page

    records = json.loads((out / "r.json").read_text())
    # 2 configurations × (pgd, fgsm, worst case) × 2 ε.
    assert len(records) == 12
    pgd = next(r for r in records if r["method"] == "er_minus" and r["attack"] == "pgd" and r["eps"] == 0.1)
    assert (pgd["lam"], pgd["robust_acc"], pgd["clean_acc"], pgd["n"], pgd["complete"]) == (5.0, 50.0, 100.0, 4, True)
    assert pgd["attack_config"] == [{"attack": "pgd", "eps": 0.1, "steps": 7}]
    worst = next(r for r in records if r["attack"] == "worst_case")
    assert worst["attacks"] == ["fgsm", "pgd"]
    capsys.readouterr()
    assert main(["report", str(root), "--html", str(out / "x.html")]) == 2  # figures are needed to embed them
    assert "--figures" in capsys.readouterr().err
