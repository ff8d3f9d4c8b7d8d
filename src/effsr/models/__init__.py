"""The model zoo. Every architecture file is imported here by name and registers itself."""

# The registry's order is the zoo's order: the seed and NTIRE 2024 models (and SAFMN-L, the LSANet / IFADNet
# distillation teacher) first, then the NTIRE 2025 and 2026 entries.
# isort: off
from . import agdn, ifadnet, lsanet, mdrn, msn, rlfn, safmn_l, safmnpp, span  # noqa: F401  (explicit registration)
from . import efdn, dscf, spanf, safmnv3, espan, disp  # noqa: F401  (explicit registration)
# isort: on
from ._registry import (
    ModelSpec,
    all_weight_records,
    build_model,
    detect_architecture,
    get_spec,
    get_weights_record,
    list_models,
    load_model,
    load_state_dict_strict,
    register_model,
    resolve_model_name,
)

__all__ = [
    "ModelSpec",
    "all_weight_records",
    "build_model",
    "detect_architecture",
    "get_spec",
    "get_weights_record",
    "list_models",
    "load_model",
    "load_state_dict_strict",
    "register_model",
    "resolve_model_name",
]
