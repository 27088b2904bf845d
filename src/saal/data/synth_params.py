"""Random parameters of one synthetic dermoscopy image, drawn from its own RNG.

Every image gets a generator of its own, ``SeedSequence(seed, spawn_key=(i,))``
(the i-th child that ``SeedSequence(seed).spawn`` would give), so image ``i``
depends on ``(seed, i)`` only: ``generate(100)`` is a prefix of
``generate(1000)`` and batches can be cut anywhere. All geometry is expressed in
normalised image coordinates (``[-1, 1]`` across the image) and all noise on
fixed lattices, so the parameters do not depend on the output size either.

The sub-populations (:data:`GROUPS`) differ in lesion size and shape, pigment,
skin tone and occlusion: each group's sampler below is the place to change how
one of them looks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# name -> (frequency, description). Frequencies span ~50% down to 5%, as the
# common/rare imbalance of real archives does; they sum to 1.
GROUPS: dict[str, tuple[float, str]] = {
    "common_nevus": (0.50, "small/medium, round, brown to dark-brown lesion on light to tan skin"),
    "large_irregular": (0.18, "large multi-lobed variegated lesion (dark patches, blue-grey and whitish "
                              "regression areas), often cut by the image border"),
    "dark_skin": (0.12, "brown-black lesion on dark skin: low lesion/skin contrast, frequent vignette"),
    "hair_occluded": (0.08, "typical lesion crossed by many thick dark hairs"),
    "pale_low_contrast": (0.07, "light-tan lesion barely darker than the skin, with soft fading borders"),
    "vascular_red": (0.05, "pink-red lesion (haemoglobin, red-purple lacunae) with little melanin, often inside "
                           "an erythema halo that is not lesion"),
}
GROUP_NAMES: tuple[str, ...] = tuple(GROUPS)
_CUMULATIVE = np.cumsum([f for f, _ in GROUPS.values()])

# Value-noise fields: name -> lattice sizes of the octaves (amplitude halves per octave).
NOISE_OCTAVES: dict[str, tuple[int, ...]] = {
    "skin_mottle": (8, 24, 56),      # uneven skin pigmentation and freckling
    "skin_erythema": (3, 6),      # patchy redness of the skin
    "border": (5, 10, 20, 48),    # fine irregularity of the lesion border
    "variegation": (3, 6, 12),    # darker and lighter pigment patches
    "blue": (3, 6),               # where blue-grey (dermal) pigment sits
    "regression": (4, 8),         # where whitish regression areas sit
}
# Jittered cells (Worley noise) give the pigment network (cell borders) and the
# globules / lacunae (cell centres); the cell size varies per image up to this count.
MAX_CELLS = 40

HARMONICS = 6  # Fourier terms k = 2..7 of each lobe's radius
HAIR_COLUMNS = 10  # axis (0: y=p(x), 1: x=p(y)), pivot t0, p(t0), slope, bend, cubic, start, end, half width, opacity
STICKER_COLOURS = np.array([[0.10, 0.55, 0.90], [0.98, 0.55, 0.10], [0.98, 0.85, 0.10],
                            [0.15, 0.70, 0.30], [0.45, 0.85, 0.90]], dtype=np.float32)


@dataclass
class ImageParams:
    """Everything random about one image (see :mod:`saal.data.synth_render` for its use)."""

    group: int
    # skin
    skin_mel: float                  # melanin density of the skin: its tone, light (0) to dark (~2)
    skin_mottle: float
    skin_erythema: float
    white_balance: np.ndarray        # (3,) gain of the dermoscope's light / camera
    illum: np.ndarray                # (5,) bright-spot x, y, fall-off, gradient x, y
    # lesion
    lobes: np.ndarray                # (L, 5 + 2*HARMONICS): x, y, radius, aspect, angle, cos/sin terms
    border_noise: float              # amplitude of the fine border perturbation (distance units)
    edge: float                      # width of the soft lesion edge (distance units)
    core: float                      # fraction of the radius over which pigment rises to its core value
    rim_level: float                 # pigment at the border relative to the core
    mel: float                       # brown (epidermal melanin) density at the core
    variegation: float
    blue: float
    regression: float
    hb: float                        # haemoglobin density (red)
    halo: float                      # haemoglobin of an erythema halo around the lesion (not lesion)
    halo_width: float                # its reach outside the border (distance units)
    network: float                   # pigment of the network lines relative to ``mel``
    network_width: float             # line width in cell units
    cells: float                     # number of network cells across the image
    globules: float                  # pigment density of a globule
    globule_fraction: float          # fraction of cells holding a globule
    globule_radius: float            # in cell units
    globule_hb: float                # 0: brown globules, 1: red lacunae
    # artifacts
    hairs: np.ndarray                # (H, HAIR_COLUMNS)
    hair_rgb: np.ndarray             # (3,)
    bubbles: np.ndarray              # (K, 3) x, y, radius
    ruler: np.ndarray                # (6,) x, y, angle, length, tick spacing, half width; x=nan: none
    sticker: np.ndarray              # (6,) x, y, radius, r, g, b; x=nan: none
    vignette: np.ndarray             # (5,) x, y, radius, softness, darkness; radius=nan: none
    sensor: np.ndarray               # (3,) noise-tile offsets (0..1) and amplitude
    # texture
    noise: dict[str, list[np.ndarray]]  # name -> one lattice per octave (NOISE_OCTAVES)
    cell_points: np.ndarray          # (3, MAX_CELLS + 2, MAX_CELLS + 2): point jitter x, y; a uniform per cell


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of image ``index``: the ``index``-th child of ``SeedSequence(seed)``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def sample_params(seed: int, index: int) -> ImageParams:
    """Draw the group, then that group's lesion and artifacts, for image ``index``."""
    rng = image_rng(seed, index)
    group = int(np.searchsorted(_CUMULATIVE, rng.random() * _CUMULATIVE[-1], side="right"))
    group = min(group, len(GROUP_NAMES) - 1)
    noise = {name: [rng.standard_normal((g, g)).astype(np.float32) for g in octaves]
             for name, octaves in NOISE_OCTAVES.items()}
    cell_points = rng.random((3, MAX_CELLS + 2, MAX_CELLS + 2)).astype(np.float32)
    p = _SAMPLERS[GROUP_NAMES[group]](rng)
    p.update(group=group, noise=noise, cell_points=cell_points,
             sensor=np.array([rng.random(), rng.random(), rng.uniform(0.006, 0.02)]))
    return ImageParams(**p)


# ---------------------------------------------------------------- building blocks

def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _logu(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _maybe(rng: np.random.Generator, prob: float, lo: float, hi: float) -> float:
    """``uniform(lo, hi)`` with probability ``prob``, else 0 (a feature present in some images only)."""
    return _u(rng, lo, hi) if rng.random() < prob else 0.0


def _lobe(rng: np.random.Generator, x: float, y: float, radius: float, irregularity: float,
          max_aspect: float) -> np.ndarray:
    """One elliptic lobe whose radius is perturbed by Fourier terms decaying as 1/k."""
    k = np.arange(2, 2 + HARMONICS)
    terms = rng.standard_normal((2, HARMONICS)) * irregularity / (k / 2.0)
    head = [x, y, radius, _u(rng, 1.0, max_aspect), _u(rng, 0, np.pi)]
    return np.concatenate([head, terms.ravel()])


def _in_disc(rng: np.random.Generator, radius: float) -> tuple[float, float]:
    r, a = radius * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
    return float(r * np.cos(a)), float(r * np.sin(a))


def _satellites(rng: np.random.Generator, main: np.ndarray, count: int, size: tuple[float, float],
                reach: tuple[float, float], irregularity: float) -> list[np.ndarray]:
    """Smaller lobes overlapping the main one: the union has bays and bulges."""
    x, y, radius = main[:3]
    out = []
    for _ in range(count):
        a = rng.uniform(0, 2 * np.pi)
        d = radius * _u(rng, *reach)
        out.append(_lobe(rng, x + d * np.cos(a), y + d * np.sin(a), radius * _u(rng, *size), irregularity, 1.5))
    return out


def _hairs(rng: np.random.Generator, count: int, half_width: tuple[float, float]) -> np.ndarray:
    """Curved hairs, each a cubic graph over x (or over y) through a random point.

    Writing a hair as ``y = p(x)`` lets the renderer rasterise it column by
    column, touching only the few pixels it covers. Slopes start within 45
    degrees of the axis; a hair fades out where its bend makes it steeper than
    ~70 degrees, which reads as the hair leaving the skin surface.
    """
    rows = []
    for _ in range(count):
        x0, y0 = _in_disc(rng, 1.0)
        rows.append([rng.integers(2), x0, y0, np.tan(rng.uniform(-np.pi / 4, np.pi / 4)), rng.normal(0, 0.3),
                     rng.normal(0, 0.08), x0 - _u(rng, 0.2, 2.2), x0 + _u(rng, 0.2, 2.2), _u(rng, *half_width),
                     _u(rng, 0.55, 1.0)])
    return np.array(rows, dtype=np.float64).reshape(-1, HAIR_COLUMNS)


def _hair_colour(rng: np.random.Generator, skin_mel: float) -> np.ndarray:
    """Dark brown to black; on light skin sometimes lighter brown."""
    base = np.array([0.16, 0.11, 0.08]) * _u(rng, 0.25, 1.0 if skin_mel < 1.0 else 0.5)
    return base * rng.uniform(0.9, 1.1, 3)


def _artifacts(rng: np.random.Generator, skin_mel: float, *, hair_prob: float, hair_count: tuple[int, int],
               hair_width: tuple[float, float], vignette_prob: float, ruler_prob: float = 0.15,
               bubble_prob: float = 0.12, sticker_prob: float = 0.05) -> dict:
    n_hairs = int(rng.integers(hair_count[0], hair_count[1] + 1)) if rng.random() < hair_prob else 0
    n_bubbles = int(rng.integers(1, 7)) if rng.random() < bubble_prob else 0
    bubbles = np.array([[*_in_disc(rng, 0.95), _logu(rng, 0.03, 0.2)] for _ in range(n_bubbles)]).reshape(-1, 3)
    ruler = np.full(6, np.nan)
    if rng.random() < ruler_prob:  # a scale bar near one side, roughly parallel to it
        side = rng.integers(4) * np.pi / 2
        off, along = _u(rng, 0.72, 0.9), _u(rng, -0.4, 0.4)
        ruler = np.array([off * np.cos(side) - along * np.sin(side), off * np.sin(side) + along * np.cos(side),
                          side + np.pi / 2 + rng.normal(0, 0.12), _u(rng, 0.4, 1.1), _u(rng, 0.05, 0.1),
                          _u(rng, 0.004, 0.008)])
    sticker = np.full(6, np.nan)
    if rng.random() < sticker_prob:  # a coloured calibration dot, mostly outside the field of view
        a = rng.uniform(0, 2 * np.pi)
        d, radius = _u(rng, 1.05, 1.25), _u(rng, 0.3, 0.45)
        colour = STICKER_COLOURS[rng.integers(len(STICKER_COLOURS))]
        sticker = np.array([d * np.cos(a), d * np.sin(a), radius, *colour])
    vignette = np.full(5, np.nan)
    if rng.random() < vignette_prob:
        vignette = np.array([*_in_disc(rng, 0.08), _u(rng, 0.92, 1.35), _u(rng, 0.01, 0.04), _u(rng, 0.02, 0.08)])
    return dict(hairs=_hairs(rng, n_hairs, hair_width), hair_rgb=_hair_colour(rng, skin_mel), bubbles=bubbles,
                ruler=ruler, sticker=sticker, vignette=vignette)


def _skin(rng: np.random.Generator, tone: tuple[float, float], erythema: tuple[float, float] = (0.0, 0.08)) -> dict:
    return dict(skin_mel=_u(rng, *tone), skin_mottle=_u(rng, 0.02, 0.07), skin_erythema=_u(rng, *erythema),
                white_balance=1.0 + rng.normal(0, 0.03, 3),
                illum=np.array([*_in_disc(rng, 0.5), _u(rng, 0.03, 0.25), *rng.normal(0, 0.06, 2)]))


def _pigment(rng: np.random.Generator, **ranges: tuple) -> dict:
    """Lesion pigment parameters; a range ``(lo, hi)`` or ``(prob, lo, hi)`` each, 0 when absent."""
    defaults = dict(core=(0.3, 0.8), rim_level=(0.25, 0.8), mel=(0.6, 1.6), variegation=(0.1, 0.3),
                    blue=(0.1, 0.0, 0.3), regression=(0.0, 0.0, 0.0), hb=(0.0, 0.1), halo=(0.0, 0.0),
                    halo_width=(0.1, 0.25), network=(0.15, 0.5), network_width=(0.25, 0.45), cells=(24, 38),
                    globules=(0.4, 0.6, 1.4), globule_fraction=(0.03, 0.15), globule_radius=(0.18, 0.35),
                    globule_hb=(0.0, 0.0), edge=(0.008, 0.06), border_noise=(0.01, 0.03))
    defaults.update(ranges)
    out = {}
    for name, spec in defaults.items():
        out[name] = _maybe(rng, *spec) if len(spec) == 3 else _u(rng, *spec)
    return out


# ---------------------------------------------------------------- the groups

def _common_nevus(rng: np.random.Generator) -> dict:
    skin = _skin(rng, (0.15, 0.9))
    main = _lobe(rng, *_in_disc(rng, 0.2), _logu(rng, 0.17, 0.42), _u(rng, 0.02, 0.06), 1.4)
    lobes = [main] + (_satellites(rng, main, 1, (0.5, 0.8), (0.3, 0.5), 0.04) if rng.random() < 0.2 else [])
    return dict(**skin, lobes=np.stack(lobes), **_pigment(rng),
                **_artifacts(rng, skin["skin_mel"], hair_prob=0.25, hair_count=(1, 5), hair_width=(0.003, 0.008),
                             vignette_prob=0.3))


def _large_irregular(rng: np.random.Generator) -> dict:
    skin = _skin(rng, (0.15, 0.9))
    main = _lobe(rng, *_in_disc(rng, 0.5), _u(rng, 0.55, 0.9), _u(rng, 0.06, 0.12), 1.5)
    lobes = [main] + _satellites(rng, main, int(rng.integers(1, 4)), (0.35, 0.65), (0.5, 0.9), 0.1)
    pigment = _pigment(rng, core=(0.2, 0.5), rim_level=(0.3, 0.7), mel=(0.7, 1.6), variegation=(0.35, 0.7),
                       blue=(0.7, 0.3, 0.9), regression=(0.6, 0.2, 0.45), hb=(0.0, 0.2), network=(0.3, 0.8),
                       globules=(0.6, 0.5, 1.1), globule_fraction=(0.05, 0.2), edge=(0.005, 0.03),
                       border_noise=(0.03, 0.06))
    return dict(**skin, lobes=np.stack(lobes), **pigment,
                **_artifacts(rng, skin["skin_mel"], hair_prob=0.25, hair_count=(1, 5), hair_width=(0.003, 0.008),
                             vignette_prob=0.4, sticker_prob=0.0))


def _dark_skin(rng: np.random.Generator) -> dict:
    skin = _skin(rng, (1.25, 2.0), erythema=(0.0, 0.05))
    main = _lobe(rng, *_in_disc(rng, 0.25), _logu(rng, 0.18, 0.48), _u(rng, 0.03, 0.08), 1.5)
    lobes = [main] + (_satellites(rng, main, 1, (0.5, 0.8), (0.3, 0.6), 0.05) if rng.random() < 0.3 else [])
    pigment = _pigment(rng, mel=(0.5, 1.2), variegation=(0.15, 0.4), network=(0.2, 0.6), blue=(0.2, 0.1, 0.4))
    return dict(**skin, lobes=np.stack(lobes), **pigment,
                **_artifacts(rng, skin["skin_mel"], hair_prob=0.35, hair_count=(1, 6), hair_width=(0.003, 0.008),
                             vignette_prob=0.5))


def _hair_occluded(rng: np.random.Generator) -> dict:
    skin = _skin(rng, (0.15, 0.9))
    main = _lobe(rng, *_in_disc(rng, 0.2), _logu(rng, 0.2, 0.48), _u(rng, 0.02, 0.07), 1.4)
    return dict(**skin, lobes=main[None], **_pigment(rng),
                **_artifacts(rng, skin["skin_mel"], hair_prob=1.0, hair_count=(14, 36), hair_width=(0.005, 0.014),
                             vignette_prob=0.3))


def _pale_low_contrast(rng: np.random.Generator) -> dict:
    skin = _skin(rng, (0.15, 0.6))
    main = _lobe(rng, *_in_disc(rng, 0.25), _logu(rng, 0.22, 0.55), _u(rng, 0.04, 0.1), 1.6)
    lobes = [main] + (_satellites(rng, main, 1, (0.4, 0.7), (0.4, 0.7), 0.06) if rng.random() < 0.4 else [])
    pigment = _pigment(rng, core=(0.6, 1.0), rim_level=(0.6, 1.0), mel=(0.12, 0.32), variegation=(0.2, 0.4),
                       blue=(0.0, 0.0, 0.0), regression=(0.3, 0.0, 0.25), hb=(0.0, 0.15), network=(0.15, 0.5),
                       globules=(0.2, 0.2, 0.5), edge=(0.02, 0.06), border_noise=(0.02, 0.05))
    return dict(**skin, lobes=np.stack(lobes), **pigment,
                **_artifacts(rng, skin["skin_mel"], hair_prob=0.25, hair_count=(1, 5), hair_width=(0.003, 0.008),
                             vignette_prob=0.3))


def _vascular_red(rng: np.random.Generator) -> dict:
    skin = _skin(rng, (0.15, 0.5), erythema=(0.03, 0.12))
    main = _lobe(rng, *_in_disc(rng, 0.2), _logu(rng, 0.16, 0.42), _u(rng, 0.03, 0.08), 1.4)
    pigment = _pigment(rng, core=(0.4, 0.9), rim_level=(0.5, 0.9), mel=(0.0, 0.15), variegation=(0.1, 0.3),
                       blue=(0.5, 0.1, 0.3), regression=(0.6, 0.15, 0.45), hb=(0.3, 0.6), halo=(0.8, 0.12, 0.3),
                       network=(0.0, 0.0), cells=(10, 18), globules=(1.0, 0.4, 0.9), globule_fraction=(0.4, 0.8),
                       globule_radius=(0.22, 0.36), globule_hb=(1.0, 1.0), edge=(0.015, 0.05))
    return dict(**skin, lobes=main[None], **pigment,
                **_artifacts(rng, skin["skin_mel"], hair_prob=0.2, hair_count=(1, 4), hair_width=(0.003, 0.008),
                             vignette_prob=0.3))


_SAMPLERS: dict[str, Callable[[np.random.Generator], dict]] = {
    "common_nevus": _common_nevus,
    "large_irregular": _large_irregular,
    "dark_skin": _dark_skin,
    "hair_occluded": _hair_occluded,
    "pale_low_contrast": _pale_low_contrast,
    "vascular_red": _vascular_red,
}
assert tuple(_SAMPLERS) == GROUP_NAMES
