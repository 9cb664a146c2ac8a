"""The paper's detection experiment (ER-Classifier Section 4.5, Tables 5–8) as one Ray job.

    ray job submit --runtime-env jobs/runtime_env.yaml --working-dir . -- \
        python jobs/detection.py [--preset smoke] [--dry-run] [--storage s3://bucket/er-grid]

``paper``: MNIST and CIFAR10; an undefended net with dropout 0.5 (``none``, under KD and LID)
and ER-Classifier (``er``, under ER1 and ER2), 30 epochs; each trial then runs the detection
stage (grid/detection.py) on its whole test set split 20 % / 80 %: FGSM and PGD at ε 0.3 /
0.03, C&W-ℓ2 with RMS bound 0.007 / 0.004, every detector fitted on each attack and tested
on each (familiar Table 5, cross Tables 6–8). ``er-grid report`` prints the tables.

``smoke``: ``digits`` on CPUs in a few minutes: ``none`` and ``er_minus``, 2 epochs, detection
on 100 test examples with light FGSM/PGD/C&W settings.

Needs the spec's ``detection`` field (grid/detection_plan.py).
This file is specs plus one call.
"""

import os
import sys

from er_core.data import DATA_ROOT_ENV
from er_core.dataset_info import info
from grid.cli.job import job_main

DATASETS = ["mnist", "cifar10"]
# Section 4.5.1's settings, from each dataset's record: the attack ε and the RMS-ℓ2 bound on C&W.
PAPER_EPS = {d: info(d).paper_eps for d in DATASETS}
CW_RMS_BOUND = {d: info(d).detection_cw_rms for d in DATASETS}

PAPER = {
    "experiment": "detection",
    "datasets": list(DATASETS),
    "methods": ["none", "er"],
    "train_eps": {d: [info(d).train_eps] for d in DATASETS},  # each dataset's default training ε
    "lams": [5.0],  # the er default (er_core/methods/er.py); λ 10 slowed MNIST training badly
    "seeds": [0],
    "epochs": 30,
    "batch_size": 128,
    "hyperparams": {"none": {"dropout": 0.5}},
    # The trials' own robustness check beside detection: PGD-40 at the detection ε.
    "eval_plan": {d: [{"attack": "pgd", "eps": [eps], "options": {"steps": 40}}] for d, eps in PAPER_EPS.items()},
    "eval_n": 1000,
    "detection": {
        d: {
            "detectors": ["kd", "lid", "er1", "er2"],
            "attacks": [
                {"attack": "fgsm", "eps": eps},
                {"attack": "pgd", "eps": eps, "options": {"steps": 40}},
                {"attack": "cw_l2", "eps": CW_RMS_BOUND[d], "options": {"steps": 1000, "search_steps": 9}},
            ],
            "n": None,  # the whole test set, as the paper
            "split_seed": 0,
        }
        for d, eps in PAPER_EPS.items()
    },
    "resources": {"mnist": {"cpu": 2, "gpu": 0.25}, "cifar10": {"cpu": 4, "gpu": 0.5}},
    # None: each trial reads its own node's data root ($ER_GRID_DATA_ROOT, else ~/er-grid-data;
    # er_core.data.data_root). Set the variable where the job is submitted to pass a bucket.
    "data_root": os.environ.get(DATA_ROOT_ENV) or None,
    "max_failures": 3,
}

SMOKE = {
    "experiment": "detection-smoke",
    "datasets": ["digits"],
    "methods": ["none", "er_minus"],
    "lams": [10.0],
    "epochs": 2,
    "batch_size": 64,
    "hyperparams": {"none": {"dropout": 0.5}},
    "eval_plan": {"digits": [{"attack": "pgd", "eps": [0.1], "options": {"steps": 10}}]},
    "eval_n": 20,
    "eval_batch_size": 20,
    "detection": {"digits": {
        "detectors": ["kd", "lid", "er1", "er2"],
        "attacks": [
            {"attack": "fgsm", "eps": 0.3},
            {"attack": "pgd", "eps": 0.3, "options": {"steps": 10}},
            {"attack": "cw_l2", "eps": 0.007,
             "options": {"steps": 10, "search_steps": 2, "initial_const": 1.0, "max_const": 10.0}},
        ],
        "n": 100,
        "configs": {"kd": {"mc_passes": 20}},
    }},
    "resources": {"cpu": 1, "gpu": 0},
    "max_failures": 1,
}

if __name__ == "__main__":
    sys.exit(job_main({"paper": PAPER, "smoke": SMOKE}, default="paper"))
