"""Training throughput and fidelity on real MNIST (``make bench``; ``--quick`` for a short run).

Part 1, throughput: ``none``, ``madry`` and ``er`` trained through ``er_core.train.fit`` on a
fixed number of MNIST training images (an epoch of PGD-40 training is many minutes on 2 CPU
cores), each side by side with a plain PyTorch loop written inline here (same network from
``er_core.nets.build_model``, same Adam, same PGD / critic maths, no er_core.methods or
er_core.train). Reports training images/s, peak RSS and the ratio er_core / plain (goal ≥ 0.9). The two
implementations alternate chunk by chunk in one process (order flipped each chunk), since
on a shared machine sequential runs measured the load, not the code; peak RSS
(``ru_maxrss``) comes from a separate short run of each implementation alone.
One untimed warm-up batch precedes every timed run.

Part 2, fidelity: ``none``, ``e_cla`` and ``er_minus`` trained a few epochs on (a subset of)
MNIST, then PGD-20 (L∞) accuracy at ε 0.1 / 0.2 / 0.3 on ``eval_indices('mnist', n)``.

Usage: ``python bench/bench_train.py [--quick] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from er_core.attacks import make as make_attack
from er_core.attacks.base import project_linf
from er_core.data import Data, eval_indices, load
from er_core.methods import make
from er_core.nets import Critic, build_model
from er_core.train import fit

BATCH = 128
# Images per throughput run (full: multiples of the batch; PGD methods cost ~41 passes/image).
IMAGES = {"none": 60000, "madry": 1280, "er": 1280}
IMAGES_QUICK = {"none": 6400, "madry": 512, "er": 512}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def subset(data: Data, n: int) -> Data:
    return Data(data.name, data.x_train[:n], data.y_train[:n], data.x_test, data.y_test, data.num_classes)


# --- plain PyTorch loops (the baseline) --------------------------------------------------------
def plain_pgd(model, x, y, eps, steps, alpha):
    model.eval()
    x_adv = project_linf(x + (2 * torch.rand_like(x) - 1) * eps, x, eps)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
        x_adv = project_linf(x_adv.detach() + alpha * grad.sign(), x, eps)
    model.train()
    return x_adv.detach()


class PlainLoop:
    """The baseline: one step of the plain loop for ``name``, same defaults as the method."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.hp = hp = make(name, "mnist").hyperparams  # defaults only; the maths below is plain torch
        torch.manual_seed(0)
        self.model = build_model("mnist")
        self.opt = torch.optim.Adam(self.model.parameters(), lr=hp["lr"])
        self.critic = self.critic_opt = None
        if name == "er":
            self.critic = Critic(self.model.code_dim, hidden=hp["critic_hidden"])
            self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=hp["critic_lr"])

    def step(self, x, y) -> None:
        model, hp, critic = self.model, self.hp, self.critic
        model.train()
        if self.name != "none":
            eps, steps = hp["train_eps"], hp["pgd_steps"]
            x = plain_pgd(model, x, y, eps, steps, 2.5 * eps / steps)
        if critic is not None:
            z = model.embed(x)
            w = critic(torch.randn_like(z)).mean() - critic(z.detach()).mean()
            self.critic_opt.zero_grad()
            (-w).backward()
            self.critic_opt.step()
            with torch.no_grad():
                for p in critic.parameters():
                    p.clamp_(-hp["clip"], hp["clip"])
            for p in critic.parameters():
                p.requires_grad_(False)
            loss = F.cross_entropy(model.classify(z), y) - hp["lam"] * critic(z).mean()
        else:
            loss = F.cross_entropy(model(x), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        if critic is not None:
            for p in critic.parameters():
                p.requires_grad_(True)


def compare(name: str, data: Data, n: int, chunk: int) -> dict:
    """Seconds of er_core (``fit``) and of the plain loop on the same n images.

    The two alternate chunk by chunk (order flipped every chunk) in one process, so load
    from other processes on a shared machine hits both alike.
    """
    method, plain = make(name, "mnist"), PlainLoop(name)
    x0, y0 = data.x_train[:BATCH], data.y_train[:BATCH]
    method.train_step(x0, y0)  # warm-up, untimed
    plain.step(x0, y0)
    seconds = {"er_core": 0.0, "plain": 0.0}
    for c, start in enumerate(range(0, n, chunk)):
        part = Data(data.name, data.x_train[start : start + chunk], data.y_train[start : start + chunk],
                    data.x_test, data.y_test, data.num_classes)
        for impl in (("er_core", "plain") if c % 2 == 0 else ("plain", "er_core")):
            started = time.perf_counter()
            if impl == "er_core":
                fit(method, part, epochs=1, batch_size=BATCH, seed=c)
            else:
                order = torch.randperm(len(part.x_train))
                for i in range(0, len(order), BATCH):
                    idx = order[i : i + BATCH]
                    plain.step(part.x_train[idx], part.y_train[idx])
            seconds[impl] += time.perf_counter() - started
    return seconds


def single(impl: str, name: str, n: int, threads: int) -> None:
    """Child process: one measurement, printed as one JSON line."""
    torch.set_num_threads(threads)
    data = load("mnist")
    if impl == "compare":
        chunk = BATCH * (10 if name == "none" else 1)
        out = compare(name, data, n, chunk)
    else:  # peak RSS of a short run of one implementation alone
        x, y = data.x_train[: 2 * BATCH], data.y_train[: 2 * BATCH]
        if impl == "er_core":
            fit(make(name, "mnist"), Data(data.name, x, y, x, y, 10), epochs=1, batch_size=BATCH)
        else:
            plain = PlainLoop(name)
            plain.step(x[:BATCH], y[:BATCH])
            plain.step(x[BATCH:], y[BATCH:])
        out = {}
    print(json.dumps({"impl": impl, "method": name, "images": n, **out, "peak_rss_mb": peak_rss_mb()}))


def child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--single", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def throughput(quick: bool, threads: int) -> None:
    images = IMAGES_QUICK if quick else IMAGES
    print(f"\n## Throughput: MNIST, batch {BATCH}, {threads} thread(s), torch {torch.__version__}; "
          "er_core (train.fit) and the plain loop alternate in one process")
    print("method | images | er_core img/s | plain img/s | ratio | er_core peak RSS MB | plain peak RSS MB")
    print("--- | --- | --- | --- | --- | --- | ---")
    for name, n in images.items():
        t = child("compare", name, str(n), "--threads", str(threads))
        rss = {impl: child(impl, name, "0", "--threads", str(threads))["peak_rss_mb"] for impl in ("er_core", "plain")}
        a, b = n / t["er_core"], n / t["plain"]
        print(f"{name} | {n} | {a:.0f} | {b:.0f} | {a / b:.2f} | {rss['er_core']:.0f} | {rss['plain']:.0f}", flush=True)


def fidelity(quick: bool) -> None:
    data = load("mnist")
    n_train, epochs, n_eval = (10000, 2, 200) if quick else (20000, 3, 1000)
    idx = eval_indices("mnist", n=n_eval, seed=0)
    x_eval, y_eval = data.x_test[idx], data.y_test[idx]
    print(f"\n## Fidelity: MNIST, first {n_train} training images, {epochs} epochs, batch {BATCH}, seed 0;"
          f" PGD-20 (L∞, step max(ε/4, 2.5ε/20)) on eval_indices('mnist', {n_eval})")
    print("method | train s | clean | PGD 0.1 | PGD 0.2 | PGD 0.3")
    print("--- | --- | --- | --- | --- | ---")
    for name in ("none", "e_cla", "er_minus"):
        method = make(name, "mnist")
        started = time.perf_counter()
        fit(method, subset(data, n_train), epochs=epochs, batch_size=BATCH, seed=0)
        seconds = time.perf_counter() - started
        model = method.model.eval()
        accs = []
        for eps in (0.0, 0.1, 0.2, 0.3):
            x = make_attack("pgd", eps, steps=20)(model, x_eval, y_eval).x_adv if eps else x_eval
            with torch.no_grad():
                accs.append((model(x).argmax(1) == y_eval).float().mean().item())
        print(f"{name} | {seconds:.0f} | " + " | ".join(f"{a:.3f}" for a in accs), flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="er_core training benchmark on MNIST")
    parser.add_argument("--quick", action="store_true", help="short run (fewer images, smaller eval set)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--single", nargs=3, metavar=("IMPL", "METHOD", "IMAGES"), help=argparse.SUPPRESS)
    parser.add_argument("--skip-fidelity", action="store_true", help="throughput only")
    args = parser.parse_args(argv)
    if args.single:
        impl, name, n = args.single
        single(impl, name, int(n), args.threads)
        return
    torch.set_num_threads(args.threads)
    throughput(args.quick, args.threads)
    if not args.skip_fidelity:
        fidelity(args.quick)


if __name__ == "__main__":
    main()
