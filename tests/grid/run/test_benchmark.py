"""The one-call form (``grid.benchmark``): a model trained by plain PyTorch outside the grid,
saved with ``torch.save(state_dict)`` and loaded back, evaluated under the grid's protocol.

Checked: its robust accuracy equals what ``er_core.evaluate.attack_batch`` gives on the same
examples with the same batch seeds; a call SIGKILLed after its first committed batch, then
called again, computes only what was not committed (the first call's files are left as they
were) and ends with the rows of an uninterrupted call; a model expecting normalised inputs
is wrapped so that ε stays in [0, 1] image space; a model of the wrong shape is one error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import er_core.data
import er_core.evaluate
from er_core.eval_subset import batch_seed, eval_batches
from er_core.nets import build_model

REPO = Path(__file__).resolve().parents[3]
PLAN = [{"attack": "pgd", "eps": [0.1], "options": {"steps": 5}}, {"attack": "fgsm", "eps": [0.1]}]
N, BATCH = 60, 20


def plain_pytorch_model(path: Path) -> Path:
    """Trained with a bare loop (no er_core.train), saved as a plain state_dict."""
    torch.manual_seed(0)
    net = build_model("digits")
    data = er_core.data.load("digits")
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for _ in range(80):
        i = torch.randint(0, len(data.x_train), (64,))
        loss = torch.nn.functional.cross_entropy(net(data.x_train[i]), data.y_train[i])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return plain_pytorch_model(tmp_path_factory.mktemp("weights") / "net.pt")


def loaded(weights: Path):
    net = build_model("digits")
    net.load_state_dict(torch.load(weights, weights_only=True))
    return net.eval()


CALL = """
import sys, torch
import grid
from er_core.nets import build_model
net = build_model("digits")
net.load_state_dict(torch.load(sys.argv[1], weights_only=True))
table = grid.benchmark(net, "digits", sys.argv[2], name="plain", eval_plan={plan!r}, n_examples={n},
                       batch_size={batch}, device="cpu")
print(table.to_json())
""".format(plan=PLAN, n=N, batch=BATCH)


def call(weights: Path, storage: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CALL, str(weights), str(storage)], cwd=REPO,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=600)


def test_robust_accuracy_equals_attack_batch_on_the_same_examples(weights, tmp_path):
    import grid

    table = grid.benchmark(loaded(weights), "digits", tmp_path, name="plain", eval_plan=PLAN, n_examples=N,
                           batch_size=BATCH, device="cpu").set_index("attack")
    model, data = loaded(weights), er_core.data.load("digits")
    for item in PLAN:
        robust = 0
        for b, idx in enumerate(eval_batches("digits", N, 0, BATCH)):
            torch.manual_seed(batch_seed(0, 0, item["attack"], 0.1, b))  # as the grid seeds each batch
            x, y = data.test_examples(idx)
            rows = er_core.evaluate.attack_batch(model, item["attack"], x, y, 0.1, **item.get("options", {}))
            robust += sum(r["correct_clean"] and r["correct_adv"] for r in rows)
        assert table.loc[item["attack"], "robust_accuracy"] == pytest.approx(robust / N, abs=1e-12), item
        assert table.loc[item["attack"], "n"] == N
    assert 0.0 < table.loc["worst_case", "robust_accuracy"] < 1.0  # a result the test can get wrong


def test_an_interrupted_call_resumes_without_recomputing_what_was_committed(weights, tmp_path):
    straight = call(weights, tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = call(weights, tmp_path / "resumed", ER_GRID_TEST_KILL_AFTER_BATCHES="1")
    assert killed.returncode == -9, killed.stderr[-3000:]
    results = tmp_path / "resumed" / "plain" / "results"
    first = {p: p.stat().st_mtime_ns for p in results.rglob("*.parquet")}
    assert first, "the killed call committed its first batch"
    again = call(weights, tmp_path / "resumed")
    assert again.returncode == 0, again.stderr[-3000:]
    assert all(p.stat().st_mtime_ns == t for p, t in first.items())  # nothing committed was redone
    assert again.stdout.strip().splitlines()[-1] == straight.stdout.strip().splitlines()[-1]
    same = subprocess.run([sys.executable, "tools/compare_stores.py", str(tmp_path / "straight" / "plain"),
                           str(tmp_path / "resumed" / "plain")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert same.returncode == 0, same.stdout[-3000:] + same.stderr[-3000:]


def test_a_model_on_normalised_inputs_is_wrapped_and_a_wrong_one_refused(weights, tmp_path):
    import grid
    from er_core.dataset_info import info
    from er_core.methods.external import ExternalModel

    inner = loaded(weights)
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in info("digits").normalization)
    # A network that expects normalised images: ours undone from the inside (x·std + mean back).
    expects_normalised = torch.nn.Sequential(_Affine(std, mean), inner)
    wrapped = ExternalModel(expects_normalised, "digits", normalizes_input=False).model
    x = er_core.data.load("digits").x_test[:16]
    with torch.no_grad():
        assert torch.allclose(wrapped(x), inner(x), atol=1e-5)
    with pytest.raises(ValueError, match=r"expected \(2, 10\) logits"):
        grid.benchmark(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)), "digits", tmp_path)


class _Affine(torch.nn.Module):
    def __init__(self, scale, shift):
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x):
        return x * self.scale + self.shift


def test_a_spec_names_weights_by_path_or_uri_and_refuses_what_does_not_load(weights, tmp_path):
    """``models:`` weights as a local path or a URI (file:// here; s3:// goes through the same
    pyarrow filesystem), both giving the same trial; a missing file, a wrong factory and weights
    that do not fit the network are one line each."""
    from grid.spec import GridSpec

    entry = {"name": "plain_net", "factory": "er_core.nets:build_model", "dataset": "digits",
             "kwargs": {"dataset": "digits"}}
    spec = {"experiment": "m", "datasets": ["digits"], "methods": ["none"], "epochs": 1,
            "eval_plan": {"digits": PLAN}, "eval_n": N}
    by_path = GridSpec.from_dict({**spec, "models": [{**entry, "weights": str(weights)}]}).expand()[-1]
    by_uri = GridSpec.from_dict({**spec, "models": [{**entry, "weights": weights.as_uri()}]}).expand()[-1]
    assert by_path.trial_id == by_uri.trial_id and by_uri.weights == weights.as_uri()
    assert by_path.epochs == 0 and by_path.method == "model:plain_net"
    problems = {"weights": str(tmp_path / "missing.pt"), "factory": "er_core.nets:no_such_builder"}
    for key, value in problems.items():
        with pytest.raises(ValueError, match=rf"^spec\.models\[0\]\.{key}"):
            GridSpec.from_dict({**spec, "models": [{**entry, "weights": str(weights), key: value}]})
    with pytest.raises(ValueError, match=r"^spec\.models\[0\]\.weights: .* does not fit the model"):
        GridSpec.from_dict({**spec, "models": [{**entry, "weights": str(weights), "kwargs": {"dataset": "mnist"}}]})
    with pytest.raises(ValueError, match=r"cannot be read"):
        GridSpec.from_dict({**spec, "models": [{**entry, "weights": (tmp_path / "missing.pt").as_uri()}]})
