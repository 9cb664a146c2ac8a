"""Shared test settings.

Tests train and attack small real models on CPU. One intra-op thread: with these tiny
networks a second thread buys nothing, and on a loaded 2-core machine (Ray workers,
subprocesses) oversubscribed threads made an AutoAttack test file 30× slower.
"""

import torch

torch.set_num_threads(1)
