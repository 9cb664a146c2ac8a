"""The GPU speed levers (er_core.accel) against the plain training path, in the same run, on
whatever device is present (``make bench``; ``--quick`` for a short run).

Each lever (``channels_last``, ``compile_model``, ``autocast_bf16``, and all three together)
trains the same PGD method (``madry``; ``--method`` for another) on random images of the
dataset's shape for a fixed number of batches after an untimed warm-up (which pays the
compilation), alternating with the plain path chunk by chunk so that the machine's load hits
both alike; prints images/s of each and the ratio lever / plain. Content does not matter to
speed, so no dataset files are needed. On CPU the ratios say little about a GPU (they are here
so the script is checked); on a GPU they are what the cost model should use.

Usage: ``python bench/bench_levers.py [--quick] [--dataset mnist] [--batches 20]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from er_core.data import Data
from er_core.dataset_info import info
from er_core.methods import make
from er_core.train import fit

LEVERS = {
    "channels_last": {"channels_last": True},
    "compile_model": {"compile_model": True},
    "autocast_bf16": {"autocast_bf16": True},
    "all three": {"channels_last": True, "compile_model": True, "autocast_bf16": True},
}


def random_data(dataset: str, n: int, device: str) -> Data:
    record = info(dataset)
    g = torch.Generator().manual_seed(0)
    x = torch.rand((n, *record.shape), generator=g)
    y = torch.randint(0, record.num_classes, (n,), generator=g)
    return Data(dataset, x.to(device), y.to(device), x[:1].to(device), y[:1].to(device), record.num_classes)


def images_per_second(method, data: Data, batch: int, epoch: int) -> float:
    if method.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fit(method, data, epochs=epoch + 1, batch_size=batch, start_epoch=epoch, seed=0)
    if method.device.type == "cuda":
        torch.cuda.synchronize()
    return len(data.x_train) / (time.perf_counter() - start)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="digits on CPU, 4 batches per chunk, 2 chunks")
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--method", default="madry")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--batches", type=int, default=None, help="batches per timed chunk")
    ap.add_argument("--chunks", type=int, default=None)
    ap.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dataset = args.dataset or ("mnist" if device == "cuda" and not args.quick else "digits")
    batches = args.batches or (4 if args.quick else 20)
    chunks = args.chunks or (2 if args.quick else 5)
    data = random_data(dataset, batches * args.batch, device)
    bf16_ok = device == "cpu" or torch.cuda.is_bf16_supported()
    print(f"device {torch.cuda.get_device_name(0) if device == 'cuda' else 'cpu'}, {dataset}, {args.method}, "
          f"batch {args.batch}, {batches} batches × {chunks} chunks")
    print("| lever | plain img/s | lever img/s | ratio |")
    print("| --- | --- | --- | --- |")
    for name in args.levers:
        levers = LEVERS[name]
        if levers.get("autocast_bf16") and not bf16_ok:
            print(f"| {name} | – | – | bf16 unsupported here |")
            continue
        plain = make(args.method, dataset, device=device)
        lever = make(args.method, dataset, device=device, **levers)
        for method in (plain, lever):  # warm-up: compilation, allocator, cuDNN autotuning
            images_per_second(method, data, args.batch, 0)
        mine, theirs = [], []
        for chunk in range(chunks):
            order = (lever, plain) if chunk % 2 else (plain, lever)
            for method in order:
                (mine if method is lever else theirs).append(images_per_second(method, data, args.batch, chunk + 1))
        a, b = statistics.median(theirs), statistics.median(mine)
        print(f"| {name} | {a:,.0f} | {b:,.0f} | {b / a:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
