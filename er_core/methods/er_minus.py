"""``er_minus`` (paper §4, "ER-Classifier⁻"): Algorithm 1 without min-max robust optimisation.

Identical to ``er`` (critic, clipping, λ, ``reg_update``) except that the code is computed
and regularised on clean images and the classifier trains on clean CE: no PGD examples.
It isolates the embedding regulariser's effect (Figure 4, against ``e_cla``).
"""

from __future__ import annotations

from .base import Method
from .er import ER, ER_PARAMS


class ERMinus(ER):
    name = "er_minus"
    display_name = "ER-Classifier−"
    uses_train_eps = False
    PARAMS = {**Method.PARAMS, **ER_PARAMS}

    def inputs(self, x, y):
        return x
