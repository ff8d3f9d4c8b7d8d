"""The model zoo. Every architecture file is imported here by name and registers itself."""

from . import agdn, ifadnet, lsanet, mdrn, msn, rlfn, safmn_l, safmnpp, span  # noqa: F401  (explicit registration)
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
]
