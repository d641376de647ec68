"""Optimal Brain Damage pruning study: data, model, training, Hessian diagonals, saliency, pruning."""

__version__ = "0.1.0"
