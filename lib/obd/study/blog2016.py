"""The 2016 blog's own trained models, accuracy logs and data order.

The blog ("Neural network compression using optimal brain damage", 2016) published its TensorFlow
0.10 code (shekkizh/TensorflowProjects, folder ``Model_Pruning/``) and, for each of its five runs,
the checkpoint its pruning script restored and the accuracy log it wrote
(shekkizh/neuralnetworks.thought-experiments, folder ``Model Pruning/logs/MNIST_Pruning_logs/``).
Both are MIT-licensed, Copyright (c) 2016 Sarath Shekkizhar; the licence notice is kept in
:data:`LICENSE_NOTICE` and printed by the notebook that uses these files.

This module finds those files (:func:`blog_dir`), loads a checkpoint into the project's params
(:func:`load_blog_checkpoint`, either layout), reads a log (:func:`read_log`) and rebuilds the data
exactly as the blog's reader (``tensorflow.examples.tutorials.mnist.input_data``) served it
(:func:`tutorial_mnist`), including MNIST's original order, which TFDS does not keep.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from obd.checks import check_finite_tensors
from obd.mlp import layer_sizes
from obd.network import Params

#: Environment variable that points at the folder holding the blog's files.
ENV_VAR = "OBD_BLOG2016_DIR"
#: Default location, relative to the repository root.
DEFAULT_RELATIVE = Path("..") / "shared" / "data" / "blog2016"

LICENSE_NOTICE = """\
The blog's code, logs and checkpoints: MIT License, Copyright (c) 2016 Sarath Shekkizhar.
Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions: The above copyright notice and this
permission notice shall be included in all copies or substantial portions of the Software.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE."""

SIZES: tuple[int, ...] = (784, 50, 50, 50, 50, 10)
LAYER_NAMES: tuple[str, ...] = ("1", "2", "3", "4", "final")


def layer_names(n_layers: int) -> tuple[str, ...]:
    """The split scripts' layer suffixes: ``1..n-1``, then ``final`` (``W_1``, ..., ``W_final``)."""
    return tuple(str(i) for i in range(1, n_layers)) + ("final",)


#: The tutorial reader held out the first 5,000 training images as its validation set.
VALIDATION_SIZE = 5000
#: MNIST's first training and test labels in the original IDX order (a check of the order).
FIRST_TRAIN_LABELS = (5, 0, 4, 1, 9, 2, 1, 3, 1, 4, 3, 5, 3, 6, 1, 7, 2, 8, 6, 9)
FIRST_TEST_LABELS = (7, 2, 1, 0, 4, 1, 4, 9, 5, 9, 0, 6, 9, 0, 1, 5, 9, 7, 3, 4)


@dataclass(frozen=True)
class BlogRun:
    """One of the blog's five runs: its folder, script, variable layout and saliency."""

    name: str
    script: str
    layout: str  # "flat": one variable (weights then biases); "split": W_i and b_i variables
    saliency: str  # "magnitude": signed weight; "obd": the Hessian row sum H·1
    dropout: bool
    learning_rate: float

    @property
    def scope(self) -> str:
        return "global" if self.layout == "flat" else "layerwise"

    @property
    def batch_dependent(self) -> bool:
        return self.saliency == "obd"


RUNS: dict[str, BlogRun] = {
    r.name: r
    for r in (
        BlogRun(
            "run_magnitude_layerwise_prune", "MagnitudeBased.py", "split", "magnitude", False, 1e-4
        ),
        BlogRun(
            "run_magnitude_all_layers_prune",
            "MagnitudeBased_2.py",
            "flat",
            "magnitude",
            False,
            1e-4,
        ),
        BlogRun("run_obd_layerwise_prune", "OptimalBrainDamage.py", "split", "obd", False, 1e-4),
        BlogRun("run_obd_all_layers_prune", "OptimalBrainDamage_2.py", "flat", "obd", False, 1e-4),
        BlogRun("run_obd_all_layers_dropout", "OptimalBrainDamage_2.py", "flat", "obd", True, 1e-5),
    )
}


#: The last level each of the blog's scripts logs (``Variables Perecent``): the ``_2`` scripts
#: prune down to 30% of the weights, the others to 81%.
FINAL_PERCENT = {
    "MagnitudeBased.py": 81,
    "MagnitudeBased_2.py": 81,
    "OptimalBrainDamage.py": 81,
    "OptimalBrainDamage_2.py": 30,
}


def blog_dir() -> Path:
    """The folder of the blog's files: ``$OBD_BLOG2016_DIR``, else ``../shared/data/blog2016``
    relative to the repository root. It may not exist; see :func:`blog_available`."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return (Path(__file__).resolve().parents[3] / DEFAULT_RELATIVE).resolve()


def blog_available(root: str | os.PathLike | None = None) -> bool:
    """Whether every run folder of the blog is present under ``root`` (default :func:`blog_dir`)."""
    root = Path(root) if root is not None else blog_dir()
    return all((root / name / "results.txt").is_file() for name in RUNS)


def _run_dir(run: str, root: str | os.PathLike | None) -> Path:
    if run not in RUNS:
        raise ValueError(f"unknown run {run!r}; accepted: {', '.join(RUNS)}")
    folder = (Path(root) if root is not None else blog_dir()) / run
    if not folder.is_dir():
        raise ValueError(
            f"run folder {str(folder)!r} does not exist; set {ENV_VAR} to the folder holding the "
            "blog's run_* folders (from shekkizh/neuralnetworks.thought-experiments, "
            "'Model Pruning/logs/MNIST_Pruning_logs/')"
        )
    return folder


def checkpoint_path(run: str, root: str | os.PathLike | None = None) -> Path:
    """The checkpoint the blog's script restored: the one its ``checkpoint`` file names."""
    folder = _run_dir(run, root)
    text = (folder / "checkpoint").read_text()
    match = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', text, flags=re.M)
    if match is None:
        raise ValueError(f"{str(folder / 'checkpoint')!r} names no model_checkpoint_path")
    return folder / match.group(1)


def read_log(run: str, root: str | os.PathLike | None = None) -> list[tuple[int, float]]:
    """``(percent_pruned, test_accuracy)`` per line of the run's ``results.txt``, in logged order.

    Each line reads ``Variables Perecent: R, Test accuracy: A`` (sic); ``percent_pruned = 100 - R``.
    ``ValueError`` naming the file for a line of another form, ``R`` outside [0, 100] or ``A``
    outside [0, 1], a level logged twice or out of order (``R`` falls from 100), and a truncated
    log: one cut mid-line, or ending before the last level its script logs (:data:`FINAL_PERCENT`).
    """
    path = _run_dir(run, root) / "results.txt"
    text = path.read_text()
    where = f"{run}/results.txt"
    if text.strip() and not text.endswith("\n"):
        raise ValueError(f"{where} ends mid-line: the log is truncated")
    rows: list[tuple[int, float]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        m = re.fullmatch(r"Variables Perecent: (\d+), Test accuracy: ([0-9.]+)", line.strip())
        if m is None:
            raise ValueError(f"unexpected line in {where}: {line!r}")
        kept, acc = int(m.group(1)), float(m.group(2))
        if not (0 <= kept <= 100 and 0 <= acc <= 1):
            raise ValueError(
                f"{where}: {line.strip()!r} is not a level (variables percent in [0, 100], "
                "test accuracy in [0, 1])"
            )
        if rows and 100 - kept <= rows[-1][0]:
            what = "logged twice" if 100 - kept == rows[-1][0] else "out of order"
            raise ValueError(f"{where}: level {kept}% is {what} (the script logs each once)")
        rows.append((100 - kept, acc))
    final = FINAL_PERCENT[RUNS[run].script]
    if not rows or rows[0][0] != 0 or 100 - rows[-1][0] != final:
        last = f"{100 - rows[-1][0]}%" if rows else "nothing"
        raise ValueError(
            f"{where} is truncated: it logs from 100% down to {final}% of the variables, "
            f"this file down to {last}"
        )
    return rows


def _split_sizes(sizes: tuple[int, ...] = SIZES) -> tuple[list[int], list[int]]:
    return [a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True)], list(sizes[1:])


def params_from_flat(flat: np.ndarray, sizes: tuple[int, ...] = SIZES) -> Params:
    """Params from the ``_2`` scripts' one variable: every kernel row-major ``[in, out]`` in layer
    order, then every bias. ``ValueError`` if its length is not ``sum(in*out) + sum(out)``."""
    flat = np.asarray(flat)
    kernels, biases = _split_sizes(sizes)
    if flat.ndim != 1 or flat.size != sum(kernels) + sum(biases):
        raise ValueError(
            f"a flat variable for sizes {sizes} must be a vector of "
            f"{sum(kernels) + sum(biases)} values, got shape {flat.shape}"
        )
    w_off, b_off = 0, sum(kernels)
    params = []
    for (a, b), nk in zip(zip(sizes[:-1], sizes[1:], strict=True), kernels, strict=True):
        params.append(
            {
                "kernel": flat[w_off : w_off + nk].reshape(a, b),
                "bias": flat[b_off : b_off + b].copy(),
            }
        )
        w_off, b_off = w_off + nk, b_off + b
    return params


def flat_from_params(params: Params) -> np.ndarray:
    """Inverse of :func:`params_from_flat`: kernels row-major, then biases."""
    layer_sizes(params)
    return np.concatenate(
        [np.asarray(p["kernel"]).ravel() for p in params] + [np.asarray(p["bias"]) for p in params]
    )


def split_from_params(params: Params) -> list[np.ndarray]:
    """The split scripts' variables in creation order ``W_1, b_1, ..., W_final, b_final``."""
    layer_sizes(params)
    out = []
    for p in params:
        out += [np.asarray(p["kernel"]).ravel(), np.asarray(p["bias"])]
    return out


def params_from_split(variables: list[np.ndarray], sizes: tuple[int, ...] = SIZES) -> Params:
    """Inverse of :func:`split_from_params`."""
    if len(variables) != 2 * (len(sizes) - 1):
        raise ValueError(f"expected {2 * (len(sizes) - 1)} variables, got {len(variables)}")
    return [
        {"kernel": np.asarray(w).reshape(a, b), "bias": np.asarray(bias)}
        for w, bias, a, b in zip(
            variables[::2], variables[1::2], sizes[:-1], sizes[1:], strict=True
        )
    ]


def params_from_tensors(tensors: dict[str, np.ndarray], sizes: tuple[int, ...] = SIZES) -> Params:
    """Params from a checkpoint's tensors, either layout.

    * flat: ``inference/variables`` (see :func:`params_from_flat`);
    * split: ``inference/W_1``..``inference/W_final`` (each a vector of ``in*out`` values,
      reshaped row-major to ``[in, out]`` as the scripts' ``tf.reshape`` does) and ``b_*``.

    Adam's slots (``.../Adam``, ``.../Adam_1``) and ``beta*_power`` are ignored.
    """
    if "inference/variables" in tensors:
        return params_from_flat(np.asarray(tensors["inference/variables"], np.float32), sizes)
    suffixes = layer_names(len(sizes) - 1)
    names = [f"inference/{kind}_{n}" for n in suffixes for kind in ("W", "b")]
    missing = [n for n in names if n not in tensors]
    if missing:
        raise ValueError(
            f"checkpoint holds neither 'inference/variables' (flat layout) nor every one of "
            f"{', '.join(names)} (split layout); missing {', '.join(missing)}"
        )
    kernels, biases = _split_sizes(sizes)
    variables = []
    for n, nk, nb in zip(suffixes, kernels, biases, strict=True):
        w = np.asarray(tensors[f"inference/W_{n}"], np.float32).ravel()
        b = np.asarray(tensors[f"inference/b_{n}"], np.float32).ravel()
        if w.size != nk or b.size != nb:
            raise ValueError(
                f"layer {n}: expected {nk} weights and {nb} biases, got {w.size}, {b.size}"
            )
        variables += [w, b]
    return params_from_split(variables, sizes)


def load_blog_checkpoint(path: str | os.PathLike, sizes: tuple[int, ...] = SIZES) -> Params:
    """Load a blog checkpoint (TensorFlow V1 file, or a run folder) into params (NumPy float32).

    Reads with ``tf.train.load_checkpoint``. ``ValueError`` if ``path`` is not a readable
    checkpoint, holds neither layout, or holds a NaN or infinite weight (the error names it).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    path = Path(path)
    if path.is_dir() and (path / "checkpoint").is_file() and path.name in RUNS:
        path = checkpoint_path(path.name, path.parent)
    try:
        reader = tf.train.load_checkpoint(str(path))
    except Exception as err:  # TF raises several types for a missing or malformed file
        raise ValueError(
            f"{str(path)!r} is not a readable TensorFlow checkpoint "
            f"({type(err).__name__}); pass a run folder or its model.ckpt-N file"
        ) from None
    try:
        names = reader.get_variable_to_shape_map()
        tensors = {n: reader.get_tensor(n) for n in names if n.startswith("inference/")}
    except Exception as err:  # a damaged data file: TensorFlow's NotFoundError, DataLossError
        raise ValueError(
            f"{str(path)!r} is a damaged TensorFlow checkpoint: its tensors cannot be read "
            f"({type(err).__name__}); fetch the run folder again"
        ) from None
    params = params_from_tensors(tensors, sizes)
    check_finite_tensors(
        {f"layer{i}/{k}": v for i, layer in enumerate(params) for k, v in layer.items()},
        repr(str(path)),
    )
    return params


def load_run(run: str, root: str | os.PathLike | None = None) -> Params:
    """The params of one of :data:`RUNS`, from the checkpoint its script restored."""
    return load_blog_checkpoint(checkpoint_path(run, root))


# --------------------------------------------------------------------------------------------
# Data as the blog's reader served it


def tfds_original_index(n: int, split: str) -> np.ndarray:
    """For each position of a TFDS-prepared MNIST split, the example's index in the IDX file.

    TFDS's MNIST builder keys each example by its index ``i`` in the original file and writes the
    split sorted by ``md5(salt + str(i))`` (``tfds.core.hashing.Hasher`` with the split name as
    salt, ``tfds.core.shuffle.Shuffler``). Sorting the keys by that hash recovers the order. The
    result ``o`` satisfies ``tfds_array[p] == original[o[p]]``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; accepted: train, test")
    salt = hashlib.md5(split.encode())
    hashes = []
    for i in range(n):
        h = salt.copy()
        h.update(str(i).encode())
        hashes.append(int(h.hexdigest(), 16))
    return np.array(sorted(range(n), key=hashes.__getitem__), dtype=np.int64)


def original_order(x: np.ndarray, y: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Reorder a TFDS MNIST split into the original IDX order; ``ValueError`` if the first labels
    then differ from MNIST's well-known first labels (the order could not be recovered)."""
    o = tfds_original_index(len(y), split)
    xo, yo = np.empty_like(x), np.empty_like(y)
    xo[o], yo[o] = x, y
    first = FIRST_TRAIN_LABELS if split == "train" else FIRST_TEST_LABELS
    if tuple(int(v) for v in yo[: len(first)]) != first:
        raise ValueError(
            f"could not recover MNIST's original {split} order: first labels "
            f"{yo[: len(first)].tolist()} != {list(first)}"
        )
    return xo, yo


def tutorial_mnist(data_dir: str | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MNIST as ``input_data.read_data_sets(..., one_hot=True)`` of TF 0.10 served it.

    Original IDX order; ``validation`` is training images 0..4,999 and ``train`` images
    5,000..59,999 (55,000). Pixels are ``float32(v) * float32(1/255)``, as the reader's
    ``numpy.multiply(images.astype(float32), 1.0 / 255.0)`` computed them. Labels are ints.
    """
    from obd.study.data import load_mnist

    out = {}
    for split in ("train", "test"):
        x, y = load_mnist(split, data_dir)
        raw = np.rint(np.asarray(x, np.float64) * 255.0).astype(np.uint8)
        xo, yo = original_order(raw, np.asarray(y, np.int32), split)
        xf = xo.astype(np.float32) * np.float32(1.0 / 255.0)
        if split == "train":
            out["validation"] = (xf[:VALIDATION_SIZE], yo[:VALIDATION_SIZE])
            out["train"] = (xf[VALIDATION_SIZE:], yo[VALIDATION_SIZE:])
        else:
            out["test"] = (xf, yo)
    return out
