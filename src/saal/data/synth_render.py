"""Render a batch of synthetic dermoscopy images from their parameters.

The colour model is Beer-Lambert absorption: a bloodless, pigment-free skin
colour is attenuated by densities of epidermal melanin (brown), dermal melanin
(blue-grey) and haemoglobin (red). The skin tone is a melanin density, and a
lesion adds melanin/haemoglobin on top of it, so the same lesion looks plausible
on every skin tone and loses contrast on dark skin, as real lesions do.

Everything is array work on a whole chunk of images ``(B, S, S)``: value noise
is upsampled from small lattices with one interpolation matrix per axis (two
matmuls per octave), and variable-length items (lobes, hairs, bubbles) are
flattened with their owner image and merged with ``ufunc.reduceat`` /
``ufunc.at``; only the rare rulers, stickers and vignettes loop over images.
The binary mask is the lesion's signed distance thresholded at 0, minus what an
opaque object (the dark vignette, a calibration sticker) hides; the image
blends the lesion with an edge at least 1.5 pixels wide, so borders are
anti-aliased at any output size.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .synth_params import HARMONICS, MAX_CELLS, NOISE_OCTAVES, ImageParams

F = np.float32
K_MEL = np.array([0.50, 0.78, 1.00], F)     # epidermal melanin absorbance per unit density (R, G, B)
K_BLUE = np.array([0.95, 0.80, 0.60], F)    # dermal melanin (Tyndall effect): blue-grey
K_HB = np.array([0.12, 1.00, 0.75], F)      # oxy-haemoglobin: red
SKIN_WHITE = np.array([0.97, 0.86, 0.80], F)  # skin without melanin or blood under the dermoscope light
REGRESSION_RGB = np.array([0.88, 0.84, 0.87], F)
LUMA = np.array([0.299, 0.587, 0.114], F)   # ITU-R 601
SURFACE = F(0.03)                            # light reflected by the skin surface: keeps dark pigment from pure black
RULER_RGB = np.array([0.08, 0.08, 0.09], F)
_ANGLE_BINS = 2048
_TILE = 512


# ---------------------------------------------------------------- small helpers

def _smoothstep(lo, hi, x):
    """0 below ``lo``, 1 above ``hi``, a smooth cubic between (in place on a fresh array)."""
    t = x - lo
    t *= 1.0 / (hi - lo)
    np.maximum(t, 0.0, out=t)
    np.minimum(t, 1.0, out=t)
    sq = t * t
    t *= -2.0
    t += 3.0
    t *= sq
    return t


@lru_cache(maxsize=64)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1]: X varies along columns, Y along rows."""
    c = ((np.arange(size, dtype=F) + 0.5) / size * 2.0 - 1.0).astype(F)
    return np.ascontiguousarray(np.broadcast_to(c[None, :], (size, size))), np.ascontiguousarray(
        np.broadcast_to(c[:, None], (size, size)))


@lru_cache(maxsize=64)
def _interp_matrix(size: int, nodes: int) -> np.ndarray:
    """(size, nodes) Catmull-Rom weights from a lattice spanning the image to pixel centres."""
    s = ((np.arange(size) + 0.5) / size) * (nodes - 1)
    i = np.floor(s).astype(int)
    f = s - i
    w = np.stack([(-f**3 + 2 * f**2 - f) / 2, (3 * f**3 - 5 * f**2 + 2) / 2,
                  (-3 * f**3 + 4 * f**2 + f) / 2, (f**3 - f**2) / 2], axis=1)
    m = np.zeros((size, nodes))
    for k in range(4):
        np.add.at(m, (np.arange(size), np.clip(i + k - 1, 0, nodes - 1)), w[:, k])
    return m.astype(F)


@lru_cache(maxsize=1)
def _sensor_tile() -> np.ndarray:
    """A fixed noise tile; each image reads it at its own offset (cheap per-pixel grain)."""
    return np.random.default_rng(0x5AA1).standard_normal((3, _TILE, _TILE)).astype(F)


def _noise(params: list[ImageParams], name: str, size: int) -> np.ndarray:
    """Fractal value noise ``(B, S, S)`` with unit-ish standard deviation.

    Each octave is ``U @ lattice @ U.T`` for every image: the right product as
    one 2-D GEMM over the stacked lattices, the left one as a stacked matmul
    (numpy's other broadcasting forms of the same product are up to 10x slower).
    """
    B = len(params)
    out = np.zeros((B, size, size), F)
    total = 0.0
    for octave, nodes in enumerate(NOISE_OCTAVES[name]):
        u = _interp_matrix(size, nodes)
        lattice = np.stack([p.noise[name][octave] for p in params])              # (B, g, g)
        cols = (lattice.reshape(B * nodes, nodes) @ u.T).reshape(B, nodes, size)  # (B, g, S)
        amp = 0.5 ** octave
        out += amp * np.matmul(u[None], cols)
        total += amp * amp
    out *= 1.0 / np.sqrt(total)
    return out


def _flatten(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate per-image item arrays: (items, owner image of each, segment starts of non-empty images)."""
    counts = np.array([len(r) for r in rows])
    owners = np.repeat(np.arange(len(rows)), counts)
    items = np.concatenate(rows) if counts.sum() else np.zeros((0, rows[0].shape[1] if rows else 0))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[counts > 0]
    return items.astype(F), owners, starts


def _cells(params: list[ImageParams], size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Worley noise on a jittered grid of ``cells`` per image: distances to the nearest and
    second-nearest point (F1, F2, in cell units) and the uniform value of the nearest cell.

    ``F2 - F1`` is small along cell borders, which draws a honeycomb-like pigment
    network; small ``F1`` marks cell centres, where globules sit. Only the 2x2
    cells nearest to a pixel are searched (its own and the neighbours on its
    side), a common approximation that is exact for all but a few pixels.
    """
    B = len(params)
    side = MAX_CELLS + 2
    c = _grid(size)[0][0]
    pos = (c[None, :] + 1.0) * 0.5 * np.array([p.cells for p in params], F)[:, None]     # (B, S)
    cell = np.floor(pos).astype(np.int32)
    frac = (pos - cell).astype(F)
    step = np.where(frac < 0.5, -1, 1).astype(np.int32)
    points = np.stack([p.cell_points for p in params], axis=1).reshape(3, -1)            # (3, B*side*side)
    base = (np.arange(B, dtype=np.int32) * side * side)[:, None, None]
    f1 = np.full((B, size, size), np.inf, F)
    f2 = np.full((B, size, size), np.inf, F)
    value = np.zeros((B, size, size), F)
    for oy in (0, 1):
        dy = oy * step
        rows = base + ((cell + dy + 1) * side)[:, :, None]
        ry = (dy + 0.5 - frac)[:, :, None]
        for ox in (0, 1):
            dx = ox * step
            lin = rows + (cell + dx + 1)[:, None, :]
            d = (dx + 0.5 - frac)[:, None, :] + 0.9 * (np.take(points[0], lin) - 0.5)
            d *= d
            e = ry + 0.9 * (np.take(points[1], lin) - 0.5)
            e *= e
            d += e
            np.minimum(f2, np.maximum(f1, d), out=f2)
            np.copyto(value, np.take(points[2], lin), where=d < f1)
            np.minimum(f1, d, out=f1)
    return np.sqrt(f1, out=f1), np.sqrt(f2, out=f2), value


# ---------------------------------------------------------------- geometry

def _lesion_distance(params: list[ImageParams], size: int) -> np.ndarray:
    """Signed distance-like field of the union of lobes (>0 inside), ``(B, S, S)``.

    A lobe is an ellipse whose radius varies with the angle; the radius is
    tabulated over angle bins per lobe and looked up, which is much cheaper
    than summing the harmonics at every pixel.
    """
    c = _grid(size)[0][0]
    lobes, _, starts = _flatten([p.lobes for p in params])
    x, y, r0, aspect, angle = (lobes[:, k, None] for k in range(5))
    cos, sin, sq = np.cos(angle), np.sin(angle), np.sqrt(aspect)
    dx, dy = c[None, :] - x, c[None, :] - y                                  # (L, S) each
    u = (dx * (cos / sq))[:, None, :] + (dy * (sin / sq))[:, :, None]        # (L, S, S), rows are y
    v = (dy * (cos * sq))[:, :, None] - (dx * (sin * sq))[:, None, :]
    k = np.arange(2, 2 + HARMONICS, dtype=F)
    theta = np.linspace(-np.pi, np.pi, _ANGLE_BINS + 1, dtype=F)             # +1: theta = pi wraps to -pi
    kt = k[:, None] * theta[None, :]
    table = r0 * (1.0 + lobes[:, 5:5 + HARMONICS] @ np.cos(kt) + lobes[:, 5 + HARMONICS:] @ np.sin(kt))
    table = np.maximum(table, 0.35 * r0)
    idx = np.arctan2(v, u)
    idx += np.pi
    idx *= _ANGLE_BINS / (2 * np.pi)
    radius = np.take_along_axis(table, idx.astype(np.int32).reshape(len(lobes), -1), axis=1)
    u *= u
    v *= v
    u += v
    radius -= np.sqrt(u, out=u).reshape(len(lobes), -1)
    return np.maximum.reduceat(radius.reshape(len(lobes), size, size), starts, axis=0)


def _hair_alpha(params: list[ImageParams], size: int) -> np.ndarray:
    """Coverage of curved hairs ``(B, S, S)``, rasterised column by column.

    A hair is ``y = p(x)`` (or ``x = p(y)``), so for each column only the few
    pixels within its half width of ``p(x)`` are evaluated (distance to the
    curve = vertical offset / sqrt(1 + p'^2)); coverages are combined as
    transmissions, ``1 - prod(1 - a)``, with ``np.multiply.at``.
    """
    B = len(params)
    hairs, owners, _ = _flatten([p.hairs for p in params])
    if not len(hairs):
        return np.zeros((B, size, size), F)
    trans = np.ones((B, size, size), F)
    c = _grid(size)[0][0]
    pix = 2.0 / size
    axis, t0, p0, slope, bend, cubic, start, end, hw, opacity = (hairs[:, k, None] for k in range(10))
    dt = c[None, :] - t0                                                     # (H, S) along the hair's axis
    pos = p0 + dt * (slope + dt * (bend + dt * cubic))
    grad = slope + dt * (2 * bend + 3 * dt * cubic)
    stretch = np.sqrt(1.0 + grad * grad)
    weight = (np.clip((c - start) / 0.1, 0, 1) * np.clip((end - c) / 0.1, 0, 1)
              * np.clip((3.0 - np.abs(grad)) / 0.5, 0, 1) * opacity * np.minimum(1.0, 2 * hw / pix))
    reach = int(np.ceil((hw[:, 0] * np.sqrt(10.0)).max() / pix)) + 2
    centre = np.rint((pos + 1.0) / pix - 0.5).astype(np.int64)              # nearest pixel index across
    across = centre[..., None] + np.arange(-reach, reach + 1)                # (H, S, K)
    dist = np.abs((across + 0.5) * pix - 1.0 - pos[..., None]) / stretch[..., None]
    cover = np.clip((hw[..., None] + 0.5 * pix - dist) / pix, 0, 1) * weight[..., None]
    keep = (cover > 0) & (across >= 0) & (across < size)
    h, along, _ = np.nonzero(keep)
    img = owners[h]
    row = np.where(axis[h, 0] == 0, across[keep], along)
    col = np.where(axis[h, 0] == 0, along, across[keep])
    np.multiply.at(trans, (img, row, col), 1.0 - cover[keep])
    return 1.0 - trans


def _bubble_light(params: list[ImageParams], size: int) -> np.ndarray:
    """Added light of gel/air bubbles: a bright rim, a faint bright inside, a specular spot."""
    X, Y = _grid(size)
    out = np.zeros((len(params), size, size), F)
    bubbles, owners, starts = _flatten([p.bubbles for p in params])
    if not len(bubbles):
        return out
    x, y, r = (bubbles[:, k, None, None] for k in range(3))
    d = np.sqrt((X - x) ** 2 + (Y - y) ** 2)
    w = np.maximum(0.008, 0.08 * r)
    rim = np.exp(-(((d - r) / w) ** 2))
    spot = np.exp(-((X - x + 0.4 * r) ** 2 + (Y - y + 0.4 * r) ** 2) / (0.15 * r) ** 2)
    light = 0.35 * rim + 0.05 * (d < r) + 0.5 * spot
    out[np.unique(owners)] = np.add.reduceat(light, starts, axis=0)
    return out


def _ruler_alpha(p: ImageParams, size: int) -> np.ndarray:
    """A scale bar: a line with regular ticks on one side."""
    X, Y = _grid(size)
    x, y, angle, length, spacing, hw = p.ruler.astype(F)
    dx, dy = X - x, Y - y
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = dy * np.cos(angle) - dx * np.sin(angle)
    pix = 2.0 / size
    inside = np.clip((length / 2 - np.abs(u)) / pix, 0, 1)
    line = np.clip((hw + 0.5 * pix - np.abs(v)) / pix, 0, 1)
    phase = np.abs(((u / spacing) + 0.5) % 1.0 - 0.5) * spacing
    tick = np.clip((hw + 0.5 * pix - phase) / pix, 0, 1) * (v > 0) * (v < 0.8 * spacing)
    return inside * np.maximum(line, tick) * min(1.0, 2 * hw / pix + 0.3)


def _blend(img: np.ndarray, alpha: np.ndarray, colour) -> None:
    """In place: ``img = img + alpha * (colour - img)`` per channel (``img`` is (3, ...))."""
    for ch in range(3):
        img[ch] += alpha * (colour[ch] - img[ch])


# ---------------------------------------------------------------- the image

def render(params: list[ImageParams], size: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Images ``(B, S, S, 3)`` uint8, masks ``(B, S, S)`` uint8 {0, 1} and per-image attributes.

    Work arrays are channel-first ``(3, B, S, S)``: numpy is slow at broadcasting
    over a trailing axis of length 3.
    """
    X, Y = _grid(size)
    B = len(params)
    col = lambda name: np.array([getattr(p, name) for p in params], F)[:, None, None]  # noqa: E731
    pix = 2.0 / size

    # skin: tone, mottled pigmentation, patchy redness
    mottle = _noise(params, "skin_mottle", size)
    d_mel = np.maximum(col("skin_mel") + col("skin_mottle") * mottle, 0.0)  # no negative pigment
    d_hb = col("skin_erythema") * np.maximum(1.0 + 0.5 * _noise(params, "skin_erythema", size), 0.0)

    # lesion: shape, soft edge, pigment rising towards the core, texture
    dist = _lesion_distance(params, size)
    dist += col("border_noise") * _noise(params, "border", size)
    alpha = _smoothstep(-0.5, 0.5, dist / np.maximum(col("edge"), 1.5 * pix))
    r_main = np.array([p.lobes[0, 2] for p in params], F)[:, None, None]
    profile = _smoothstep(0.0, 1.0, dist / (col("core") * r_main))
    variegation = _noise(params, "variegation", size)
    mel, rim = col("mel"), col("rim_level")
    lesion_mel = mel * (rim + (1 - rim) * profile) * np.exp(col("variegation") * variegation + 0.12 * mottle)
    f1, f2, cell_value = _cells(params, size)
    net = 1.0 - _smoothstep(0.0, col("network_width"), f2 - f1)
    net *= _smoothstep(-1.2, 0.3, variegation) * _smoothstep(-0.2, 0.6, profile)  # patchy, fading at the rim
    lesion_mel += mel * col("network") * net
    # globules: in a fraction of cells, clustered where the variegation is dark, sizes varying
    radius = col("globule_radius") * (0.6 + 0.8 * cell_value / np.maximum(col("globule_fraction"), 1e-3))
    globules = col("globules") * _smoothstep(radius + 0.06, radius - 0.06, f1)
    globules *= (cell_value < col("globule_fraction") * 2.0 * _smoothstep(-1.0, 1.0, variegation))
    globules *= _smoothstep(0.0, 0.3, profile + 0.1)
    d_mel += alpha * (lesion_mel + 1.5 * (1 - col("globule_hb")) * globules)
    d_hb += alpha * (col("hb") * (0.85 + 0.15 * variegation) + 1.6 * col("globule_hb") * globules)
    d_hb += (1.0 - alpha) * col("halo") * _smoothstep(-col("halo_width"), 0.0, dist)  # erythema around, not lesion
    d_blue = alpha * (col("blue") * _smoothstep(-0.2, 0.8, _noise(params, "blue", size))
                      + 0.25 * col("globule_hb") * globules)  # lacunae look red-purple
    regression = alpha * col("regression") * _smoothstep(-0.2, 1.2, _noise(params, "regression", size))
    regression *= _smoothstep(0.05, 0.5, profile)  # inside the lesion: the border stays pigmented

    # Beer-Lambert colour, whitish regression, surface reflection, illumination
    white = SKIN_WHITE[:, None] * np.array([p.white_balance for p in params], F).T    # (3, B)
    ill = np.array([p.illum for p in params], F).T[:, :, None, None]
    light = (1.0 - ill[2] * ((X - ill[0]) ** 2 + (Y - ill[1]) ** 2)) * (1.0 + ill[3] * X + ill[4] * Y)
    img = np.empty((3, B, size, size), F)
    for ch in range(3):
        body = np.exp(-(d_mel * K_MEL[ch] + d_blue * K_BLUE[ch] + d_hb * K_HB[ch]))
        body *= white[ch][:, None, None]
        body += regression * (REGRESSION_RGB[ch] - body)
        body += SURFACE
        body *= light
        img[ch] = body

    hair = _hair_alpha(params, size)
    _blend(img, hair, np.array([p.hair_rgb for p in params], F).T[:, :, None, None])
    bubble = _bubble_light(params, size)
    _blend(img, bubble, np.ones(3, F))

    hidden = np.zeros((B, size, size), F)
    for b, p in enumerate(params):
        if not np.isnan(p.ruler[0]):
            _blend(img[:, b], _ruler_alpha(p, size), RULER_RGB)
        if not np.isnan(p.sticker[0]):
            sx, sy, sr = p.sticker[:3]
            d = np.sqrt((X - sx) ** 2 + (Y - sy) ** 2)
            a = _smoothstep(sr + pix, sr - pix, d)
            shade = 1.0 - 0.25 * d / sr
            _blend(img[:, b], a, [p.sticker[3 + ch] * shade for ch in range(3)])
            hidden[b] = np.maximum(hidden[b], a)
        if not np.isnan(p.vignette[2]):
            vx, vy, vr, soft, dark = p.vignette
            d = np.sqrt((X - vx) ** 2 + (Y - vy) ** 2)
            img[:, b] *= 1.0 - 0.35 * _smoothstep(vr - 0.3, vr, d)  # lens fall-off before the rim
            a = _smoothstep(vr - soft - pix, vr + soft + pix, d)
            _blend(img[:, b], a, (dark, dark * 0.9, dark * 0.95))
            hidden[b] = np.maximum(hidden[b], a)

    tile = _sensor_tile()
    sensor = np.array([p.sensor for p in params])
    rows = (np.arange(size)[None, :] + (sensor[:, 0] * _TILE).astype(int)[:, None]) % _TILE
    cols = (np.arange(size)[None, :] + (sensor[:, 1] * _TILE).astype(int)[:, None]) % _TILE
    amp = sensor[:, 2].astype(F)[:, None, None]
    for ch in range(3):
        img[ch] += tile[ch][rows[:, :, None], cols[:, None, :]] * amp

    masks = ((dist > 0) & (hidden < 0.5)).astype(np.uint8)
    attributes = _attributes(params, img, masks, hair, hidden)
    img *= 255.0
    img += 0.5
    np.clip(img, 0, 255, out=img)
    images = np.ascontiguousarray(img.astype(np.uint8).transpose(1, 2, 3, 0))
    return images, masks, attributes


def _attributes(params: list[ImageParams], img: np.ndarray, masks: np.ndarray, hair: np.ndarray,
                hidden: np.ndarray) -> dict[str, np.ndarray]:
    """Measured per-image properties: what the groups are designed to differ in."""
    lesion = masks.astype(bool)
    clear = (hair < 0.5) & (hidden < 0.5)
    les = (lesion & clear).astype(F)
    skin = (~lesion & clear).astype(F)

    def mean_rgb(region: np.ndarray) -> np.ndarray:
        n = np.maximum(region.sum((1, 2)), 1.0)
        return np.stack([(img[ch] * region).sum((1, 2)) / n for ch in range(3)], axis=1)

    lesion_rgb, skin_rgb = mean_rgb(les), mean_rgb(skin)
    lesion_luma, skin_luma = lesion_rgb @ LUMA, skin_rgb @ LUMA
    border = np.concatenate([masks[:, 0], masks[:, -1], masks[:, :, 0], masks[:, :, -1]], axis=1)
    return {
        "skin_tone": np.array([p.skin_mel for p in params], np.float32),
        "lesion_area": lesion.mean((1, 2)).astype(np.float32),
        "touches_border": border.any(1),
        "contrast": ((skin_luma - lesion_luma) / np.maximum(skin_luma, 1e-3)).astype(np.float32),
        "skin_luma": skin_luma.astype(np.float32),
        "lesion_rgb": np.clip(lesion_rgb, 0, 1).astype(np.float32),
        "skin_rgb": np.clip(skin_rgb, 0, 1).astype(np.float32),
        "hair_coverage": hair.mean((1, 2)).astype(np.float32),
        "n_hairs": np.array([len(p.hairs) for p in params], np.int32),
        "n_bubbles": np.array([len(p.bubbles) for p in params], np.int32),
        "vignette": np.array([not np.isnan(p.vignette[2]) for p in params]),
        "ruler": np.array([not np.isnan(p.ruler[0]) for p in params]),
        "sticker": np.array([not np.isnan(p.sticker[0]) for p in params]),
    }
