"""Shared test settings.

Tests train small real models on CPU; two threads is what CI's machine has, and more
threads than cores only adds contention when pytest runs alongside Ray workers.
"""

import torch

torch.set_num_threads(2)
