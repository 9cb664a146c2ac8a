"""``none``: the undefended baseline, cross-entropy on clean images.

Same encoder+classifier network as every other method (``nets.build_model``), so method
comparisons differ only in training. Adam, lr 1e-3.
"""

from __future__ import annotations

from .base import Method, cross_entropy


class NoDefense(Method):
    name = "none"
    display_name = "No Defense"

    def loss(self, x, y):
        ce = cross_entropy(self.model(x), y)
        return ce, {"ce": float(ce.detach())}
