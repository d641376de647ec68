"""Shared fixtures: small synthetic data sets and networks."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture
def toy_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A learnable 3-class problem with 20 inputs: labels from a fixed random linear map."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(20, 3))
    x = rng.uniform(size=(600, 20)).astype(np.float32)
    y = ((x - 0.5) @ w).argmax(-1).astype(np.int32)
    return x[:500], y[:500], x[500:], y[500:]
