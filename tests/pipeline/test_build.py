"""The build (Makefile, obd.pipeline.outputs): every report depends on its parameters and on
every library module; `make -n` plans exactly what changed."""

from __future__ import annotations

import os
import time
from pathlib import Path

from checkout import copy_checkout, run_make


def _planned(out: str) -> set[str]:
    """The report names a ``make -n`` would (re)build."""
    names = set()
    for line in out.splitlines():
        if "obd.pipeline.outputs run " in line:
            names.add(Path(line.split()[5]).name)
        elif "obd.study.report " in line:
            names.add("index")
    return names


def test_outputs_depend_on_parameters_and_every_module(tmp_path):
    tree = copy_checkout(tmp_path)
    dirs = {k: tmp_path / k for k in ("results", "reports", "figures")}

    def planned(*args: str) -> set[str]:
        return _planned(run_make("-n", "study", *args, dirs=dirs, cwd=tree).stdout)

    def finish_all() -> None:  # pretend a complete run: every report newer than its inputs
        time.sleep(1.1)
        now = time.time()
        for name in everything:
            (dirs["reports"] / f"{name}.html").write_text("done")
            os.utime(dirs["reports"] / f"{name}.html", (now, now))  # one time: none is newer

    everything = planned()
    assert {"train-plain-seed0", "prune-obd-global-plain", "compare", "retrain", "index"} <= (
        everything
    )
    finish_all()
    assert planned() == set()
    # another step count reruns the MLP trainings and everything downstream; the convnet study
    # and the frontier train their own networks, so their runs do not depend on STEPS
    convnets = {n for n in everything if n.startswith(("convnet", "frontier"))}
    assert {"convnet-lenet5-seed0", "convnet-lenet_300_100-seed0", "convnet_compare",
            "frontier-lenet_300_100-seed0"} <= convnets  # fmt: skip
    # own_model trains its own network too
    assert planned("STEPS=100") == everything - convnets - {"own_model"} | {"index"}
    assert "-p steps 100" in (dirs["reports"] / ".params" / "train-plain-seed0.args").read_text()
    finish_all()
    assert planned("STEPS=100") == set()
    # other pruning arguments rerun the prune sweeps and what reads them, not the trainings
    prune = planned("STEPS=100", "PRUNE_ARGS=-p hessian_examples 100")
    assert "prune-obd-global-plain" in prune and "compare" in prune and "index" in prune
    assert not any(n.startswith("train-") for n in prune) and "retrain" not in prune
    assert not prune & convnets
    finish_all()
    # the convnet runs' own arguments rerun them and what reads them, nothing of the MLP study
    conv = planned(
        "STEPS=100", "PRUNE_ARGS=-p hessian_examples 100", "LENET5_ARGS=-p train_steps 50"
    )
    assert conv == {"convnet-lenet5-seed0", "convnet_compare", "index"}
    finish_all()
    front = planned("STEPS=100", "PRUNE_ARGS=-p hessian_examples 100",
                    "LENET5_ARGS=-p train_steps 50", "FRONTIER_ARGS=-p patience 3")  # fmt: skip
    frontier = {n for n in everything if n.startswith("frontier-")}
    assert frontier and front == frontier | {"convnet_compare", "index"}
    finish_all()
    # editing any library module (core, study or pipeline) reruns every notebook
    for module in ("pipeline/io.py", "pipeline/runner.py", "study/variants.py", "hessian.py"):
        assert planned("STEPS=100", "PRUNE_ARGS=-p hessian_examples 100", "-W",
                       f"lib/obd/{module}") == everything, module  # fmt: skip
    (tree / "lib" / "obd" / "pipeline" / "io.py").touch()
    assert planned("STEPS=100", "PRUNE_ARGS=-p hessian_examples 100") == everything
    # `make help` or `make lint` never write stamps
    other = tmp_path / "other"
    run_make("-n", "help", dirs={"reports": other}, cwd=tree)
    assert not other.exists()
