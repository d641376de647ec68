import numpy as np
import pandas as pd
import pytest

from obd import checks
from obd.pipeline import params as P
from obd.study.variants import (
    blog_variant,
    default_fractions,
    parse_variant,
    summary_markdown,
    summary_table,
    tolerated_fraction,
)


def _sweep(variant, seed, accs):
    f = np.linspace(0, 1, len(accs))
    return pd.DataFrame({"variant": variant, "seed": seed, "fraction": f, "accuracy": accs})


def test_tolerated_fraction_is_largest_level_within_drop():
    df = pd.concat([
        _sweep("obd-global-plain", 0, [0.97, 0.965, 0.961, 0.95, 0.5]),
        _sweep("obd-global-plain", 1, [0.96, 0.955, 0.94, 0.951, 0.1]),
    ])  # fmt: skip
    t = tolerated_fraction(df, 0.01).set_index("seed")
    assert t.loc[0, "tolerated_fraction"] == 0.5  # 0.961 >= 0.96, 0.95 < 0.96
    assert t.loc[1, "tolerated_fraction"] == 0.75  # 0.951 >= 0.95 even after a dip
    s = summary_table(df, 0.01).iloc[0]
    assert s.seeds == 2 and s.tolerated_mean == pytest.approx(0.625)
    assert s.tolerated_std == pytest.approx(np.std([0.5, 0.75], ddof=1))
    md = summary_markdown(summary_table(df, 0.01))
    assert "| OBD, all layers (corrected) | 2 | 96.50 | 62.5 ± 17.7 |" in md


def test_variants_parse_and_flavours():
    v = parse_variant("blog_obd-global-dropout")
    assert v.as_published and v.include_biases and v.family == "obd_global_dropout"
    c = blog_variant("obd_global_dropout", as_published=False)
    assert c.name == "obd-global-dropout" and not c.include_biases and c.color == v.color
    with pytest.raises(ValueError, match="scope in"):
        parse_variant("obd-everywhere-plain")


def test_default_fractions():
    f = default_fractions()
    assert f.size == 101 and f[0] == 0 and f[-1] == 1 and f[29] == 0.29


def test_parameter_checks():
    before = {"a"}
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) zz; accepted: q"):
        P.check_no_unknown({"a": 1, "q": 2, "zz": 3, "_x": 4}, before, ["q"])
    P.check_no_unknown({"a": 1, "q": 2}, before, ["q"])
    with pytest.raises(ValueError, match="choose one of"):
        P.check_choice("scope", "all", ["global", "layerwise"])
    with pytest.raises(ValueError, match="an integer"):
        checks.check_number("seed", 1.5, integer=True)
    with pytest.raises(ValueError, match="outside"):
        checks.check_number("drop", 2, lo=0, hi=1)
