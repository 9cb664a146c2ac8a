"""``er-grid query`` cannot mislead: no silent pooling of attacks/ε/datasets, n and completeness
on every row, the attacks a worst case covers; the README's query examples give per-attack rows.

Hand-written store (no Ray). Runtime: ~3 s.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd
import pytest

from grid.cli import main
from grid.report.query import PoolingError, query_table
from grid.store import ResultStore, load

REPO = Path(__file__).resolve().parents[3]


def row(sample_idx: int, correct_adv: bool, attack: str, eval_n: int = 4) -> dict:
    return {
        "train_eps": None, "lam": None, "seed": 0, "epochs": 2, "norm": "Linf",
        "sample_idx": sample_idx, "label": 1, "pred_clean": 1, "pred_adv": 1 if correct_adv else 3,
        "correct_clean": True, "correct_adv": correct_adv, "l2": 0.1, "l2_rms": 0.01, "linf": 0.1,
        "queries": -1, "seconds": 0.01, "attack_config": f'{{"attack":"{attack}"}}', "checkpoint_hash": "abc",
        "eval_subset": f"n={eval_n},seed=0", "library_versions": "{}", "gradient_failed": False,
        "randomized": False,
    }


@pytest.fixture
def results(tmp_path) -> Path:
    """digits/none, eval_n 4: at ε 0.1 PGD 2/4 and FGSM 3/4 robust (worst case 1/4); at ε 0.2 PGD
    0/4 and FGSM only half evaluated (batch 1 of 2 stored: 2 of 4 examples, both robust)."""
    root = tmp_path / "results"
    store = ResultStore(str(root))
    outcome = {("pgd", 0.1): [True, False, True, False], ("fgsm", 0.1): [True, True, False, True],
               ("pgd", 0.2): [False] * 4, ("fgsm", 0.2): [True, True]}
    for (attack, eps), correct in outcome.items():
        store.write_batch([row(i, c, attack) for i, c in enumerate(correct)], experiment="e", dataset="digits",
                          method="none", trial_id="t1", attack=attack, eps=eps, batch=0)
    return root


def test_by_that_pools_attacks_or_eps_is_refused_naming_the_keys(results, capsys):
    # The example the old README gave: method,eps averaged FGSM and PGD silently.
    assert main(["query", str(results), "--by", "method,eps"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "attack (fgsm, pgd)" in err and "eps" not in err.split("average over")[1].split(":")[0]
    assert main(["query", str(results), "--by", "dataset,method"]) == 2
    err = capsys.readouterr().err
    assert "attack (fgsm, pgd)" in err and "eps (0.1, 0.2)" in err
    with pytest.raises(PoolingError, match="add attack, eps to --by"):
        query_table(load(results), by=["method"])
    # One attack and one ε selected by filters: nothing is pooled, so no key is needed.
    assert main(["query", str(results), "--attack", "pgd", "--eps", "0.1", "--by", "method", "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert table["robust_accuracy"].tolist() == [0.5]
    # The row still names the one attack, ε and dataset it is about.
    assert table[["dataset", "attack", "eps"]].values.tolist() == [["digits", "pgd", 0.1]]


def test_every_row_has_n_and_completeness_and_worst_case_lists_its_attacks(results, capsys):
    assert main(["query", str(results), "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out)).set_index(["attack", "eps"])
    assert table.loc[("fgsm", 0.2), "n"] == 2 and table.loc[("fgsm", 0.2), "n_planned"] == 4
    assert not table.loc[("fgsm", 0.2), "complete"]
    assert table.loc[("pgd", 0.2), "complete"] and table.loc[("pgd", 0.1), "n"] == 4
    # Worst case at 0.1: over both attacks, complete; at 0.2 only the 2 examples both attacks
    # evaluated count, so it is incomplete too.
    assert table.loc[("worst_case", 0.1), "attacks"] == "fgsm,pgd"
    assert table.loc[("worst_case", 0.1), "robust_accuracy"] == 0.25
    assert table.loc[("worst_case", 0.2), "n"] == 2 and not table.loc[("worst_case", 0.2), "complete"]
    assert table.loc[("pgd", 0.1), "attacks"] == "pgd"
    # The text table flags it where the eye lands.
    assert main(["query", str(results)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if " fgsm " in line and " 0.2 " in line]
    assert len(lines) == 1 and "INCOMPLETE" in lines[0]


def readme_queries() -> list[list[str]]:
    """The `er-grid query` example lines of the README, as argument lists after `query RESULTS`."""
    text = (REPO / "README.md").read_text()
    lines = re.findall(r"^er-grid query (\S+)(.*?)(?:\s+#.*)?$", text, flags=re.M)
    return [rest.split() for _, rest in lines]


def test_readme_query_examples_give_per_attack_numbers(results, capsys, tmp_path):
    examples = readme_queries()
    assert len(examples) >= 2
    for args in examples:
        args = [a if a not in ("mnist",) else "digits" for a in args]  # the examples name the paper's datasets
        out = tmp_path / "out.csv"
        argv = ["query", str(results), *[str(out) if a.endswith((".csv", ".parquet")) else a for a in args]]
        argv = [a for a in argv]
        if "--format" not in argv:
            argv += ["--format", "csv"]
        if "--out" not in argv:
            argv += ["--out", str(out)]
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 0, (argv, err)
        table = pd.read_parquet(out) if argv[argv.index("--format") + 1] == "parquet" else pd.read_csv(out)
        assert "attack" in table.columns or table.get("attacks", pd.Series(dtype=str)).nunique() <= 1, argv
        assert "n" in table.columns and "complete" in table.columns
