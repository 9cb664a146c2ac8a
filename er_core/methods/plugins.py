"""Methods from outside this repository: a spec's ``methods:`` may name, besides the built-in
registry names, a class by ``package.module:ClassName`` (importable where the grid runs) or an
entry point of the group ``er_grid.methods`` (``pip install my-defense`` is then enough).

Trust: naming a plugin runs its code, when the spec is checked and in every trial: a spec is
as trusted as a Python file. ``er-grid status``, ``query`` and ``report`` never import it (they
read the trials' recorded configs and rows); :func:`grid.load_model` of a plugin trial imports
it, and says so.

The contract (:func:`check_contract`, checked once per spec before anything runs, one line
naming what is missing): a subclass of :class:`er_core.methods.base.Method` with a ``name``,
its own ``train_step`` or ``loss``, every hyperparameter it declares a :class:`Param` with
bounds (``low``/``high``) or ``choices`` where its default is a number or a string, and a
``model`` that takes a [0, 1] batch of the dataset's shape and returns (N, classes) logits.
``embed`` is needed only where a stage uses the code z (the codes stage, ER detectors).

Identity (:func:`plugin_identity`): the qualified name, the installed distribution's version
where there is one, and the sha256 of the class's source file. It is part of every trial's id
(``grid.spec.TrialConfig.method_identity``), so a changed plugin is a new trial and a resume
into the old one stops with the existing mismatch error instead of mixing rows.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
from importlib import metadata
from pathlib import Path

from .base import ADVERSARIAL_PARAMS, Method, Param

ENTRY_POINT_GROUP = "er_grid.methods"
# What the base classes already declare (bounded or not by their own rules): a plugin is judged
# on the settings it adds.
BASE_PARAMS = {**Method.PARAMS, **ADVERSARIAL_PARAMS}


class PluginError(ValueError):
    """A plugin method that cannot be imported or breaks the contract (one line)."""


class PluginImportError(PluginError, ImportError):
    """A plugin whose code cannot be imported here: also an ImportError, so what degrades
    without an optional library (``er-grid status``'s estimate) degrades without the plugin."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


@functools.lru_cache(maxsize=None)
def load_plugin(name: str) -> type[Method]:
    """The class ``name`` designates (``module:Class`` or an entry point), contract not yet checked."""
    # A long-lived process (a reused Ray worker) may have cached the listing of site-packages from
    # before the plugin was installed: without this it would not find the new package.
    importlib.invalidate_caches()
    if ":" in name:
        module_name, _, attribute = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as err:  # the plugin's own import error, whatever it is, in one line
            raise PluginImportError(f"method {name!r}: cannot import module {module_name!r} "
                                    f"({type(err).__name__}: {err})", name) from err
        cls = getattr(module, attribute, None)
        if cls is None:
            raise PluginError(f"method {name!r}: module {module_name!r} has no attribute {attribute!r}")
        return cls
    found = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        raise PluginError(f"unknown method {name!r}: not a built-in method, not a 'module:Class' name and no "
                          f"entry point of group {ENTRY_POINT_GROUP!r} is called so")
    try:
        return found[0].load()
    except Exception as err:
        raise PluginImportError(f"method {name!r}: entry point {found[0].value!r} does not load "
                                f"({type(err).__name__}: {err})", name) from err


def entry_point_names() -> list[str]:
    return sorted(ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))


def check_contract(cls, name: str, dataset: str) -> None:
    """One PluginError naming the first way ``cls`` breaks the method contract on ``dataset``."""
    where = f"method {name!r}"
    if not (inspect.isclass(cls) and issubclass(cls, Method)):
        raise PluginError(f"{where}: {cls!r} is not a subclass of er_core.methods.Method")
    if cls.train_step is Method.train_step and cls.loss is Method.loss:
        raise PluginError(f"{where}: {cls.__name__} defines neither train_step nor loss")
    if not isinstance(getattr(cls, "PARAMS", None), dict):
        raise PluginError(f"{where}: {cls.__name__}.PARAMS must be a dict of Param")
    for key, param in cls.PARAMS.items():
        if not isinstance(param, Param):
            raise PluginError(f"{where}: hyperparameter {key!r} is not declared as a Param")
        if key in BASE_PARAMS and BASE_PARAMS[key] is param:
            continue
        default = param.default
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
        if numeric and not param.bounded and param.choices is None:
            raise PluginError(f"{where}: hyperparameter {key!r} is a Param without bounds (give low/high)")
        if isinstance(default, str) and param.choices is None:
            raise PluginError(f"{where}: hyperparameter {key!r} names an option but lists no choices")
    from .external import check_model_io

    try:
        model = cls(dataset).model.eval()
    except Exception as err:
        raise PluginError(f"{where}: {cls.__name__}({dataset!r}) fails ({type(err).__name__}: {err})") from err
    check_model_io(model, dataset, f"{where}:", error=PluginError)


def plugin_identity(name: str) -> dict:
    """What identifies the plugin's code: its qualified name, distribution version (None when it
    is not installed as one) and the sha256 of the file defining the class."""
    cls = load_plugin(name)
    module = inspect.getmodule(cls)
    source = Path(inspect.getsourcefile(cls) or "")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16] if source.is_file() else None
    top = (module.__name__ if module else cls.__module__).split(".")[0]
    version = None
    for dist in metadata.packages_distributions().get(top, []):
        version = f"{dist} {metadata.version(dist)}"
        break
    return {"qualname": f"{cls.__module__}:{cls.__qualname__}", "distribution": version, "source_sha256": digest}


__all__ = ["ENTRY_POINT_GROUP", "PluginError", "PluginImportError", "check_contract", "entry_point_names", "load_plugin",
           "plugin_identity"]
