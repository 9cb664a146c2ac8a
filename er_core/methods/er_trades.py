"""``er_trades`` (paper §4, "ER-Trades"): ER-Classifier's regulariser with the TRADES loss.

The classification loss is TRADES' CE(f(x), y) + β·KL(f(x) ‖ f(x')) (see ``trades``), x'
from TRADES' KL-maximising inner loop; the critic and the encoder regulariser act on the
code of x', exactly as ``er`` acts on the code of its PGD examples (critic, clipping, λ,
``reg_update`` as in ``er``).
"""

from __future__ import annotations

from .base import Method
from .er import ER, ER_PARAMS
from .trades import TRADES_PARAMS, trades_loss


class ERTrades(ER):
    name = "er_trades"
    display_name = "ER-Trades"
    PARAMS = {**Method.PARAMS, **TRADES_PARAMS, **ER_PARAMS}

    def inputs(self, x, y):
        return x  # x' is built inside the TRADES loss

    def task_loss(self, x, x_t, y):
        return trades_loss(self, x, y)
