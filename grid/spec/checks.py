"""Spec checks that need more than a type test: the YAML itself (its size, duplicate keys, no
aliases, a nesting bound), the size of an ε range, method hyperparameters against their
defaults' types and their er_core Params' bounds and choices (a ``*seed`` one against the seed
range). Used by ``grid.spec.grid_spec`` while a spec is validated, so each fails before any trial starts."""

from __future__ import annotations

import math

import yaml

# Most ε values one {start, stop, step} range may expand to (the paper's longest sweep has
# 17); counted arithmetically before anything is expanded, so a tiny step fails at once.
MAX_EPS_VALUES = 1000
# Every integer that becomes an RNG seed (numpy's legacy seeding, torch's CUDA seeding) must be
# a 32-bit unsigned value; checked in the spec, not when a trial overflows after start-up.
SEED_LIMIT = 2 ** 32
# The paper's whole grid is a 3 KB spec: 1 MB is refused before it is parsed.
MAX_SPEC_BYTES = 1 << 20
# Deepest a spec nests is ~6 (detection → dataset → configs → detector → option → list).
MAX_SPEC_DEPTH = 32


def eps_range_count(name: str, start: float, stop: float, step: float) -> int:
    """How many values the inclusive range has; ValueError naming ``<name>.step`` when more
    than :data:`MAX_EPS_VALUES` (or when (stop − start) / step overflows)."""
    span = (stop - start) / step  # inf for a subnormal step
    if not math.isfinite(span):
        raise ValueError(f"{name}.step: {step!r} from {start!r} to {stop!r} gives more than 10^308 ε values; "
                         f"at most {MAX_EPS_VALUES} per range")
    # Inclusive of stop; the small (relative) tolerance absorbs float error in the division.
    count = int(math.floor(span + max(1e-9, span * 1e-12))) + 1
    if count > MAX_EPS_VALUES:
        raise ValueError(f"{name}.step: {step!r} from {start!r} to {stop!r} gives {count:,} ε values; "
                         f"at most {MAX_EPS_VALUES} per range")
    return count


def check_data_root(data_root, datasets=()) -> None:
    """A local ``data_root`` must be an existing folder where the grid starts; an object store's
    (staged per node, ``grid.trial.data_staging``) must answer and hold a folder for each of
    ``datasets`` (``grid.spec.data_root_probe``). Checked by ``grid.run.run`` before any trial
    starts and anything is written, not at spec validation, so ``--dry-run`` works on a machine
    without the data or the network."""
    from pathlib import Path

    from .data_root_probe import probe_data_root

    if data_root is None:
        return
    if "://" in data_root:
        probe_data_root(data_root, datasets)
    elif not Path(data_root).expanduser().is_dir():
        raise ValueError(f"spec.data_root: {data_root!r} is not an existing folder")


def load_yaml(text: str, where: str):
    """``yaml.safe_load`` that refuses a key given twice in one mapping (PyYAML keeps the last
    one silently: a second ``epochs:`` further down would win unseen), a text over
    :data:`MAX_SPEC_BYTES` (before parsing), any alias (``*name``: a few lines of anchors and
    aliases expand to billions of nodes, the "billion laughs") and nesting deeper than
    :data:`MAX_SPEC_DEPTH`. A spec has no use for aliases: each field is written out."""
    if len(text) > MAX_SPEC_BYTES:
        raise ValueError(f"spec: {where} holds {len(text):,} characters; a spec file is at most "
                         f"{MAX_SPEC_BYTES:,} (the paper's whole grid is ~3,000)")
    return yaml.load(text, Loader=_unique_key_loader(where))


def _unique_key_loader(where: str):
    class UniqueKeyLoader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent, index):
            # Refused while composing, at the first alias: nothing has been expanded yet.
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise ValueError(f"spec: {where} uses a YAML alias at line {mark.line + 1}; aliases "
                                 "(*name) are not accepted in a spec, write the value out")
            self.depth += 1
            try:
                if self.depth > MAX_SPEC_DEPTH:
                    mark = self.peek_event().start_mark
                    raise ValueError(f"spec: {where} nests deeper than {MAX_SPEC_DEPTH} levels "
                                     f"(at line {mark.line + 1})")
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    line = key_node.start_mark.line + 1
                    raise ValueError(f"spec.{key}: given twice in {where} (again at line {line}); keep one")
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def check_hyperparam_values(where: str, method: str, dataset: str, params: dict) -> None:
    """Each hyperparameter has its default's type (an int default takes no float or bool, a
    float default no bool) and is a value its ``er_core`` Param accepts (its bounds or
    choices): checked before any trial starts, not when the method is built hours later."""
    from er_core.methods import defaults, method_class

    resolved = defaults(method, dataset)
    for key, value in params.items():
        default = resolved.get(key)
        if default is None or value is None:
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise ValueError(f"spec.{where}.{key}: expected {type(default).__name__} like the default "
                             f"{default!r}, got {value!r}")
    for key, value in params.items():
        # init_seed and any other seed a method declares reach torch/numpy seeding.
        if key.endswith("seed") and isinstance(value, int) and not isinstance(value, bool) \
                and not 0 <= value < SEED_LIMIT:
            raise ValueError(f"spec.{where}.{key}: {value!r} is not in [0, 2**32); a seed is a 32-bit value")
    declared = method_class(method).PARAMS
    for key, value in params.items():
        param = declared.get(key)
        # None stands for the default where a setting names an option (resolve reads it so);
        # a bounded number must be given as a number.
        if param is None or (value is None and not param.bounded):
            continue
        try:
            param.check(method, key, value)
        except ValueError as err:
            raise ValueError(f"spec.{where}: {err}") from err
