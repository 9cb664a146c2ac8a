"""The convergence probe: PGD with 100 steps × 5 restarts (Carlini et al. 2019 §4.3: "more
iterations and restarts must not change the answer").

Evaluated beside the plan's PGD at the same ε, it tells whether that PGD had converged: the
``pgd_unconverged`` flag (``er_core.sanity.attacks``) fires when the probe finds significantly
more adversarial examples on the same images. Its own registry name keeps its rows apart from
the plan's PGD rows at the same ε. Step size 2.5·ε/steps (Madry et al.'s rule: the far side of
the ball is reachable within the steps), so the 100 steps are finer, not just more, than PGD-40's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .pgd import PGD


@dataclass(frozen=True)
class PGDProbe(PGD):
    name: ClassVar[str] = "pgd_probe"
    steps: int = 100
    restarts: int = 5

    @property
    def alpha(self) -> float:
        if self.step_size is not None:
            return float(self.step_size)
        return 2.5 * self.eps / self.steps


__all__ = ["PGDProbe"]
