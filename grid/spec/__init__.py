"""What a grid is: a spec (YAML or dict) validated into a :class:`GridSpec` that expands into
:class:`TrialConfig`\\ s. No torch, pandas or pyarrow at import (a spec is checked before any
of them is needed).

- ``grid_spec``: :class:`GridSpec`, :class:`TrialConfig` and ``trial_id``;
- ``validation``: every field checked and normalised before the spec exists;
- ``fields``: the field validators every part of a spec shares;
- ``checks``: duplicate YAML keys, ε ranges, method hyperparameters against their ``Param``;
- ``detection_plan`` / ``codes_plan``: the optional detection and codes stages' plans;
- ``storage``: which storage a multi-node run may use (object stores, folders declared shared).
"""

from __future__ import annotations

from .checks import check_data_root, load_yaml
from .codes_plan import trial_codes_plan
from .detection_plan import DetectionPlan, trial_detection_plan
from .fields import DEFAULT_RESOURCES
from .grid_spec import GridSpec, TrialConfig
from .storage import storage_refusal

__all__ = ["DEFAULT_RESOURCES", "DetectionPlan", "GridSpec", "TrialConfig", "check_data_root", "load_yaml",
           "storage_refusal", "trial_codes_plan", "trial_detection_plan"]
