"""``e_cla`` (paper §4.3, "E-CLA"): encoder + classifier with the same structure as
ER-Classifier, trained with cross-entropy on clean images; no critic, no adversarial examples.

It is the ablation of ``er_minus`` without the embedding regulariser (Figure 4). In this
codebase every method uses the same encoder+classifier network, so ``e_cla`` trains exactly
like ``none``; it is kept as its own name because the paper reports it separately.
"""

from __future__ import annotations

from .none import NoDefense


class ECLA(NoDefense):
    name = "e_cla"
    display_name = "E-CLA"
