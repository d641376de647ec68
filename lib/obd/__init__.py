"""Optimal Brain Damage and friends in JAX: exact Hessian diagonals, saliencies, pruning, OBS.

The core is flat and imports nothing from :mod:`obd.study` (the 2016 blog study built on it) or
:mod:`obd.pipeline` (the notebook pipeline behind the report)::

    from obd import hessian_diag, saliencies, masks, sweep, apply_masks, iterative_prune

Every name below is also importable from its own module (``obd.hessian``, ``obd.prune``, ...);
importing ``obd`` itself loads nothing heavy until a name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: name -> the core module that defines it
_EXPORTS: dict[str, str] = {
    # models the core accepts
    "ACTIVATIONS": "obd.network",
    "Network": "obd.network",
    "as_network": "obd.network",
    "MLP": "obd.mlp",
    "init_mlp": "obd.mlp",
    "apply_mlp": "obd.mlp",
    "max_pool": "obd.nets",
    "avg_pool": "obd.nets",
    "flatten": "obd.nets",
    # curvature
    "hessian_diag": "obd.hessian",
    "hvp": "obd.hessian",
    "empirical_fisher_diag": "obd.curvature",
    "mc_fisher_diag": "obd.curvature",
    "hutchinson_diags": "obd.curvature",
    "adam_nu_diag": "obd.curvature",
    # saliency and pruning
    "saliency": "obd.saliencies",
    "register_saliency": "obd.saliencies",
    "saliency_kinds": "obd.saliencies",
    "masks": "obd.prune",
    "apply_masks": "obd.prune",
    "ranks": "obd.prune",
    "sweep": "obd.prune",
    "layer_sparsity": "obd.prune",
    # Optimal Brain Surgeon
    "obs_prune": "obd.obs",
    "obs_sweep": "obd.obs",
    "global_obs_prune": "obd.obs",
    "global_obs_step": "obd.obs",
    "global_obs_sweep": "obd.obs",
    "obs_sweep_model": "obd.obs",
    # OBD's assumptions, and retraining
    "loss_change_curve": "obd.taylor",
    "loss_change_terms": "obd.taylor",
    "retrain_masked": "obd.retrain",
    "iterative_prune": "obd.retrain",
    "cubic_sparsity": "obd.gradual",
    "gradual_prune": "obd.gradual",
    "gradual_path": "obd.gradual",
}

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "Network",
    "adam_nu_diag",
    "apply_masks",
    "apply_mlp",
    "as_network",
    "avg_pool",
    "empirical_fisher_diag",
    "flatten",
    "global_obs_prune",
    "global_obs_step",
    "global_obs_sweep",
    "hessian_diag",
    "hutchinson_diags",
    "hvp",
    "init_mlp",
    "iterative_prune",
    "layer_sparsity",
    "loss_change_curve",
    "loss_change_terms",
    "masks",
    "max_pool",
    "mc_fisher_diag",
    "obs_prune",
    "obs_sweep",
    "obs_sweep_model",
    "ranks",
    "register_saliency",
    "retrain_masked",
    "saliency",
    "saliency_kinds",
    "sweep",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'obd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load on first use
    from obd.curvature import adam_nu_diag, empirical_fisher_diag, hutchinson_diags, mc_fisher_diag
    from obd.hessian import hessian_diag, hvp
    from obd.mlp import MLP, apply_mlp, init_mlp
    from obd.nets import avg_pool, flatten, max_pool
    from obd.network import ACTIVATIONS, Network, as_network
    from obd.obs import (
        global_obs_prune,
        global_obs_step,
        global_obs_sweep,
        obs_prune,
        obs_sweep,
        obs_sweep_model,
    )
    from obd.prune import apply_masks, layer_sparsity, masks, ranks, sweep
    from obd.retrain import iterative_prune, retrain_masked
    from obd.saliencies import register_saliency, saliency, saliency_kinds
    from obd.taylor import loss_change_curve, loss_change_terms
