"""Training-method registry: one module per method, one line each here.

``make(name, dataset, device="cpu", **hyperparams)`` builds a :class:`Method` with its
model, critic and optimisers. ``defaults(name, dataset=None)`` lists every hyperparameter
with its default (per-dataset ones resolved when ``dataset`` is given, else shown as
``None``); ``describe(name)`` gives each one's documentation. ``uses_lambda(name)`` /
``uses_train_eps(name)`` say which grid axes apply, so the grid expands no duplicate trials.
Methods from other packages: ``er_core.methods.plugins``.
"""

from __future__ import annotations

from .base import FROM_RECIPE, PER_DATASET, Method, resolve
from .e_cla import ECLA
from .er import ER
from .er_minus import ERMinus
from .er_trades import ERTrades
from .madry import Madry
from .none import NoDefense
from .rse import RSE
from .trades import TRADES
from .vae_cla import VAECLA

METHODS: dict[str, type[Method]] = {
    "none": NoDefense,
    "madry": Madry,
    "trades": TRADES,
    "rse": RSE,
    "er": ER,
    "er_minus": ERMinus,
    "er_trades": ERTrades,
    "e_cla": ECLA,
    "vae_cla": VAECLA,
}


def method_class(name: str) -> type[Method]:
    """The class of a built-in method, or of a plugin (``module:Class`` or an entry point of
    group ``er_grid.methods``, ``er_core.methods.plugins``; importing it runs its code)."""
    if name in METHODS:
        return METHODS[name]
    from .plugins import PluginError, entry_point_names, load_plugin

    try:
        return load_plugin(name)
    except PluginError as err:
        if ":" in name or name in entry_point_names():
            raise
        installed = ", ".join(entry_point_names()) or "none"
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}, a 'module:Class' "
                         f"name or an installed er_grid.methods entry point ({installed})") from err


def is_builtin(name: str) -> bool:
    return name in METHODS


def make(name: str, dataset: str, device="cpu", **hyperparams) -> Method:
    """Build method ``name`` for ``dataset``; unknown names/hyperparameters raise ValueError."""
    return method_class(name)(dataset, device=device, **hyperparams)


def defaults(name: str, dataset: str | None = None) -> dict:
    """Every hyperparameter of ``name`` with its default (per-dataset and recipe ones: None unless
    ``dataset``)."""
    cls = method_class(name)
    if dataset is not None:
        return resolve(cls, dataset, {})
    return {k: (None if p.default is PER_DATASET or p.default is FROM_RECIPE else p.default)
            for k, p in cls.PARAMS.items()}


def describe(name: str) -> dict[str, str]:
    """Each hyperparameter's one-line documentation."""
    return {k: p.doc for k, p in method_class(name).PARAMS.items()}


def uses_lambda(name: str) -> bool:
    return method_class(name).uses_lambda


def uses_train_eps(name: str) -> bool:
    return method_class(name).uses_train_eps


__all__ = ["METHODS", "Method", "defaults", "describe", "is_builtin", "make", "method_class", "uses_lambda",
           "uses_train_eps"]
