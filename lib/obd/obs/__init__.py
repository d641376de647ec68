"""Optimal Brain Surgeon: layer-wise (OBC-style, on the layer-input Hessian ``2 X^T X / n``) and
global (on the exact per-unit Hessian blocks of the loss).

One concern per module:

* :mod:`obd.obs.greedy`: greedy OBS on one unit (saliency ``w_q^2 / (2 [H^-1]_qq)``, the update
  and the inverse's downdate), :class:`LayerTrace` and :func:`spd_inverse`;
* :mod:`obd.obs.levels`: kernels at every sparsity level from the traces, and their sweep table;
* :mod:`obd.obs.layerwise`: layer-wise OBS of the plain MLP (:func:`obs_sweep`, :func:`obs_prune`);
* :mod:`obd.obs.conv`: layer-wise OBS of NNX models, convolutions unrolled (:func:`obs_sweep_model`);
* :mod:`obd.obs.blocks`: the exact per-unit Hessian blocks of the loss (:func:`unit_blocks`) and
  their damped inverses;
* :mod:`obd.obs.global_obs`: global OBS (:func:`global_obs_sweep`, :func:`global_obs_prune`;
  :func:`global_obs_step` from a sparse model, the step of iterative OBS with retraining);
* :mod:`obd.obs.stages`: its multi-stage path (``stages=``: the blocks recomputed at the pruned,
  updated weights between stages; ``resolve=``: a Newton re-solve of the remaining weights).

The public names of all of them are importable from ``obd.obs``.
"""

from obd.obs.blocks import GLOBAL_DAMPING, damped_inverses, unit_blocks
from obd.obs.conv import design_matrices, obs_sweep_model
from obd.obs.global_obs import (
    global_allocate,
    global_obs_prune,
    global_obs_step,
    global_obs_sweep,
    global_obs_traces,
)
from obd.obs.greedy import LayerTrace, obs_unit_trace, obs_unit_trace_compacted, spd_inverse
from obd.obs.layerwise import (
    ALLOCATIONS,
    allocate,
    layer_hessian,
    layer_inputs,
    obs_layer_trace,
    obs_prune,
    obs_sweep,
    obs_traces,
)
from obd.obs.levels import zero_counts
from obd.obs.stages import newton_directions, resolve_step, stage_bounds

__all__ = [
    "ALLOCATIONS",
    "GLOBAL_DAMPING",
    "LayerTrace",
    "allocate",
    "damped_inverses",
    "design_matrices",
    "global_allocate",
    "global_obs_prune",
    "global_obs_step",
    "global_obs_sweep",
    "global_obs_traces",
    "layer_hessian",
    "layer_inputs",
    "newton_directions",
    "obs_layer_trace",
    "obs_prune",
    "obs_sweep",
    "obs_sweep_model",
    "obs_traces",
    "obs_unit_trace",
    "obs_unit_trace_compacted",
    "resolve_step",
    "spd_inverse",
    "stage_bounds",
    "unit_blocks",
    "zero_counts",
]
