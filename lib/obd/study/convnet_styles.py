"""How the convnet study shows each method and network: legend labels, colours and markers of
figures 8 and 9 (``convnet_compare.ipynb``) and the names in its tables."""

from __future__ import annotations

from obd.study.convnet_metrics import ARCHS
from obd.study.variants import COLORS

#: method key: legend label, colour, marker (None: a line over the one-shot levels)
METHODS: dict[str, tuple[str, str, str | None]] = {
    "magnitude_global": ("magnitude, all layers, one-shot", COLORS["magnitude_global"], None),
    "magnitude_layerwise": ("magnitude, layer-wise, one-shot", COLORS["magnitude_layerwise"], None),
    "obd_global": ("OBD, all layers, one-shot", COLORS["obd_global"], None),
    "obd_layerwise": ("OBD, layer-wise, one-shot", COLORS["obd_layerwise"], None),
    "obs_layerwise": ("OBS, layer-wise, one-shot", COLORS["obs_layerwise"], None),
    "iterative_obd": ("OBD, iterative with retraining", "darkred", "o"),
    "iterative_magnitude": ("magnitude, iterative with retraining", "darkorange", "s"),
}
#: sparsity CSV ``saliency`` value: legend label, colour
SPARSITY_SOURCES: dict[str, tuple[str, str]] = {
    "obd": ("OBD, iterative (last round)", "darkred"),
    "magnitude": ("magnitude, iterative (last round)", "darkorange"),
    "oneshot_obd": ("OBD, all layers, one-shot (1-point loss)", COLORS["obd_global"]),
    "oneshot_magnitude": ("magnitude, all layers, one-shot (1-point loss)",
                          COLORS["magnitude_global"]),
    "frontier_obd": ("OBD, iterative, at its frontier (within 0.1 point)", "navy"),
    "han2015": ("Han et al. 2015 (published)", "black"),
}  # fmt: skip
#: published method key: colour, marker (figure 8; every network, both panels)
PUBLISHED_STYLES: dict[str, tuple[str, str]] = {
    "han2015": ("black", "*"),
    "dns2016": ("tab:purple", "D"),
    "sparsevd2017": ("teal", "P"),
    "sws2017": ("deeppink", "X"),
}


def label(method: str) -> str:
    """Legend label of a method key (the key itself if unknown)."""
    return METHODS[method][0] if method in METHODS else method.replace("_", ", ")


def color(method: str) -> str:
    """Plot colour of a method key (black if unknown)."""
    return METHODS[method][1] if method in METHODS else "black"


def arch_label(arch: str) -> str:
    """Display name of a network key."""
    return ARCHS.get(arch, arch)


def published_style(method: str) -> tuple[str, str]:
    """(colour, marker) of a published method key (grey circle if unknown)."""
    return PUBLISHED_STYLES.get(method, ("grey", "o"))
