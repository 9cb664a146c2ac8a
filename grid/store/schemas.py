"""The schema of every table of the results store, declared once: example rows, trial rows,
detection rows, codes rows and sanity flags. The readers check every committed file against
these; ARCHITECTURE.md's "Results schema" explains each column."""

from __future__ import annotations

import pyarrow as pa


def column(name: str, type_: pa.DataType, nullable: bool = False) -> pa.Field:
    """A schema column; not nullable unless said, so a missing value is an error, not a null."""
    return pa.field(name, type_, nullable=nullable)


UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")

#: One row per evaluated example (ARCHITECTURE.md "Results schema", fingerprint columns included).
ROW_SCHEMA = pa.schema([
    column("experiment", pa.string()),
    column("trial_id", pa.string()),
    column("dataset", pa.string()),
    column("method", pa.string()),
    column("train_eps", pa.float64(), nullable=True),   # None where the method trains on clean data
    column("lam", pa.float64(), nullable=True),         # None where the method has no λ
    column("seed", pa.int64()),
    column("epochs", pa.int64()),
    column("attack", pa.string()),
    column("norm", pa.string()),                        # "Linf" | "L2"
    column("eps", pa.float64()),                        # in [0, 1] image space
    column("batch", pa.int64()),                        # evaluation batch index from 0
    column("sample_idx", pa.int64()),                   # index into the dataset's test set
    column("label", pa.int64()),
    column("pred_clean", pa.int64()),
    column("pred_adv", pa.int64()),
    column("correct_clean", pa.bool_()),
    column("correct_adv", pa.bool_()),
    column("l2", pa.float64()),                         # ‖x_adv − x‖₂
    column("l2_rms", pa.float64()),                     # ‖x_adv − x‖₂ / sqrt(C·H·W), the paper's form
    column("linf", pa.float64()),
    column("queries", pa.int64()),                      # model queries; −1 where not counted
    column("seconds", pa.float64()),                    # attack wall time per example (batch time / N)
    column("code_version", pa.string()),
    column("created_at", UTC_TIMESTAMP),
    # Fingerprint: what produced the row, so changed runs never mix silently.
    column("attack_config", pa.string()),               # canonical JSON of the attack's full config
    column("checkpoint_hash", pa.string()),             # hash of the evaluated model checkpoint
    column("eval_subset", pa.string()),                 # "n=1000,seed=0"
    column("library_versions", pa.string()),            # JSON {library: version}
    column("gradient_failed", pa.bool_(), nullable=True),  # None where the attack uses no gradient
    column("randomized", pa.bool_()),                   # model is randomized (RSE): ensemble verdict
])

#: One row per trial: training outcome and where it ran.
TRIAL_SCHEMA = pa.schema([
    column("trial_id", pa.string()),
    column("experiment", pa.string()),
    column("dataset", pa.string()),
    column("method", pa.string()),
    column("train_eps", pa.float64(), nullable=True),
    column("lam", pa.float64(), nullable=True),
    column("seed", pa.int64()),
    column("epochs", pa.int64()),
    column("clean_accuracy", pa.float64()),             # on the evaluation subset, in [0, 1]
    column("losses_json", pa.string()),                 # JSON list of per-epoch {loss name: mean}
    column("wall_seconds", pa.float64()),               # training + evaluation wall time
    column("device", pa.string()),                      # e.g. "cuda:0 (NVIDIA H100)" or "cpu"
    column("checkpoint_hash", pa.string()),
    column("recipe", pa.string()),                      # er_core.recipes name
    column("hyperparams_json", pa.string()),            # every method hyperparameter as resolved
    column("validation_n", pa.int64()),                 # training images held out for validation
    column("evaluate", pa.string()),                    # "last" | "best_validation"
    column("evaluated_epoch", pa.int64()),              # epoch whose weights were evaluated
    column("code_version", pa.string()),
    column("created_at", UTC_TIMESTAMP),
])


#: One row per (trial, detector, fit attack, test attack) of the detection stage.
DETECTION_SCHEMA = pa.schema([
    column("experiment", pa.string()),
    column("dataset", pa.string()),
    column("method", pa.string()),
    column("trial_id", pa.string()),
    column("train_eps", pa.float64(), nullable=True),
    column("lam", pa.float64(), nullable=True),
    column("seed", pa.int64()),
    column("epochs", pa.int64()),
    column("detector", pa.string()),
    column("fit_attack", pa.string()),
    column("fit_eps", pa.float64()),                  # C&W: the RMS-ℓ2 bound
    column("test_attack", pa.string()),
    column("test_eps", pa.float64()),
    column("acc_adv", pa.float64(), nullable=True),   # fractions in [0, 1]; NaN where undefined
    column("acc_nadv", pa.float64(), nullable=True),
    column("acc_cla", pa.float64(), nullable=True),
    column("acc_com", pa.float64(), nullable=True),
    column("n_adv", pa.int64()),
    column("n_nat", pa.int64()),
    column("n_detected", pa.int64()),
    column("n_undetected", pa.int64()),
    column("n_undetected_correct", pa.int64()),
    column("n_natural_flagged", pa.int64()),
    column("fit_seconds", pa.float64()),
    column("score_seconds", pa.float64()),
    column("craft_seconds", pa.float64()),            # crafting the test attack on sets I and II
    column("detector_config", pa.string()),           # canonical JSON of the detector's config
    column("detection_config", pa.string()),          # canonical JSON of the trial's detection plan
    column("checkpoint_hash", pa.string()),
    column("library_versions", pa.string()),
    column("code_version", pa.string()),
    column("created_at", UTC_TIMESTAMP),
])

#: One row per (trial, example, natural | adversarial) of the codes stage.
CODES_SCHEMA = pa.schema([
    column("experiment", pa.string()),
    column("trial_id", pa.string()),
    column("dataset", pa.string()),
    column("method", pa.string()),
    column("train_eps", pa.float64(), nullable=True),
    column("lam", pa.float64(), nullable=True),
    column("seed", pa.int64()),
    column("sample_idx", pa.int64()),
    column("label", pa.int64()),
    column("kind", pa.string()),                       # "natural" | "adversarial"
    column("pred", pa.int64()),                        # the model's prediction on this image
    column("code", pa.list_(pa.float32())),            # z = model.embed(x), code_dim values
    column("attack_config", pa.string()),              # canonical JSON of the PGD config
    column("checkpoint_hash", pa.string()),
    column("code_version", pa.string()),
    column("created_at", UTC_TIMESTAMP),
])
#: The two kinds of codes row.
NATURAL, ADVERSARIAL = "natural", "adversarial"

#: One row per flag raised on a trial (zero rows: checked, nothing flagged).
SANITY_SCHEMA = pa.schema([
    column("experiment", pa.string()),
    column("dataset", pa.string()),
    column("method", pa.string()),
    column("trial_id", pa.string()),
    column("flag", pa.string()),                          # one of er_core.sanity.FLAG_NAMES
    column("attack", pa.string(), nullable=True),         # None for trial-level flags
    column("eps", pa.float64(), nullable=True),
    column("value", pa.float64()),                        # the measured quantity
    column("threshold", pa.float64()),                    # the bound it crossed
    column("evidence", pa.string()),
    column("code_version", pa.string()),
    column("created_at", UTC_TIMESTAMP),
])

#: Per evaluation batch of an attack whose library checks the model (AutoAttack): one
#: ``recorded`` row (the batch's notes were kept, none or some), then one row per note: a
#: ``warning`` of pyautoattack's checks, or the ``eot_probe``'s "broken/probed" (randomized models).
NOTES_SCHEMA = pa.schema([
    column("experiment", pa.string()),
    column("dataset", pa.string()),
    column("method", pa.string()),
    column("trial_id", pa.string()),
    column("attack", pa.string()),
    column("eps", pa.float64()),
    column("batch", pa.int64()),
    column("kind", pa.string()),                          # "recorded" | "warning" | "eot_probe"
    column("message", pa.string()),                       # the library's words ("" on the recorded row)
    column("code_version", pa.string()),
    column("created_at", UTC_TIMESTAMP),
])

__all__ = ["ADVERSARIAL", "NOTES_SCHEMA", "CODES_SCHEMA", "DETECTION_SCHEMA", "NATURAL", "ROW_SCHEMA", "SANITY_SCHEMA",
           "TRIAL_SCHEMA", "UTC_TIMESTAMP", "column"]
