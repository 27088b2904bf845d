"""The self-supervised encoder of a run: its weights (pretraining on the pool first if needed) and its features.

Selection, training and the representative / diversity queries all read the
same two things, so they are made once per run directory and reused: the
self-supervised U-Net in ``ssl/`` and the pool's bottleneck features in
``features/``. What the U-Net learned depends on its pretraining objective
(the preset's; :func:`saal.ssl.describe_objective`): contrastive (cpu) trains
the encoder, whose bottleneck gives the features, and leaves the decoder as
initialised; Models Genesis restoration (paper) and restoration + contrastive
(demo) train encoder and decoder.

The pretraining seed is the run's seed unless a call names another
(``ssl_seed``): an experiment that samples the pretraining too keeps each other
run in ``pretraining/seed<s>/`` (its own ``ssl/`` and ``features/``), so the run
directory of a single pretraining looks as it always did.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import SaalError, SelectionError
from ..io import load_state, read_json
from ..models.unet import UNet, UNetConfig
from ..progress import say
from ..runtime import resolve_device
from ..selection import extract_features, load_features, model_fingerprint, normalise_features, save_features
from ..ssl import PretrainConfig, pretrain
from ..ssl.pretrain import SSL_DIR
from ..workspace import Workspace

FEATURES_DIR = "features"
PRETRAINING_DIR = "pretraining"


def ssl_root(ws: Workspace, ssl_seed: int | None = None) -> Path:
    """The folder that holds ``ssl/`` and ``features/`` of the pretraining with seed ``ssl_seed``.

    The run directory itself for the run's seed (None), ``pretraining/seed<s>/`` for any other.
    """
    if ssl_seed is None or int(ssl_seed) == ws.seed:
        return ws.run_dir
    return ws.path(PRETRAINING_DIR, f"seed{int(ssl_seed)}")


def ssl_weights(ws: Workspace, *, ssl_seed: int | None = None, epochs: int | None = None, resume: bool = False,
                force: bool = False, device: str = "auto", progress: bool = True) -> Path:
    """The run's self-supervised weights (``ssl/weights.pt``), pretraining on the pool first if needed.

    Pretraining sees the pool only, never the test images; a finished run is
    reused, an interrupted one continued (see :func:`saal.ssl.pretrain`).
    ``ssl_seed`` (default: the run's seed) chooses the pretraining run. A stage
    that asks for no settings of its own (``epochs`` None, no ``force``) uses the
    pretraining the run already holds as it was made (``saal pretrain --epochs 1``
    then ``saal select``), and says so when that differs from the preset.
    """
    config = PretrainConfig.from_preset(ws.preset, epochs=epochs)
    seed = ws.seed if ssl_seed is None else int(ssl_seed)
    root = ssl_root(ws, seed)
    if epochs is None and not force:
        held = held_pretraining(root)
        if held is not None and held != config:
            have, want = held.to_dict(), config.to_dict()
            made = ", ".join(f"{k}={have[k]!r}" for k in sorted(want) if have.get(k) != want[k])
            say(f"using the pretraining in {root / SSL_DIR} as it was made ({made}; the preset's differ): "
                "'saal pretrain --force' redoes it with the preset's settings")
            config = held
    result = pretrain(ws.feature_pool, root, config=config, seed=seed, device=device, resume=resume, force=force,
                      progress=progress)
    return result.weights_path


def held_pretraining(root: Path) -> PretrainConfig | None:
    """The settings of the pretraining in ``root/ssl`` (finished, or interrupted with a checkpoint); None if none."""
    meta, checkpoint = root / SSL_DIR / "model.json", root / SSL_DIR / "checkpoint.pt"
    if meta.is_file():
        recorded = read_json(meta).get("training")
    elif checkpoint.is_file():
        recorded = load_state(checkpoint).get("fingerprint", {}).get("config")
    else:
        return None
    return PretrainConfig.from_dict(recorded) if isinstance(recorded, dict) else None


def ssl_state(ws: Workspace, init: str, *, ssl_seed: int | None = None, progress: bool = True) -> dict | None:
    """The self-supervised weights for ``init == 'ssl'`` (pretraining first if needed), else None."""
    return load_state(ssl_weights(ws, ssl_seed=ssl_seed, progress=progress)) if init == "ssl" else None


def load_encoder(ws: Workspace, weights: str | os.PathLike | None = None, *, ssl_seed: int | None = None,
                 progress: bool = True) -> tuple[UNet, Path]:
    """The U-Net whose bottleneck gives the selection features: given ``weights`` or the run's SSL ones.

    A weights file outside the run is read with the ``model.json`` beside it when
    there is one (as ``saal pretrain`` writes), else with the preset's width.
    """
    path = Path(weights) if weights is not None else ssl_weights(ws, ssl_seed=ssl_seed, progress=progress)
    if not path.is_file():
        raise SaalError(f"{path}: weights file not found")
    meta = path.parent / "model.json"
    if meta.is_file() and "unet" in (recorded := read_json(meta)):
        config = UNetConfig(**recorded["unet"])
    else:
        config = UNetConfig(in_channels=ws.feature_pool.channels, out_channels=ws.feature_pool.channels,
                            base_width=ws.preset.base_width)
    if config.in_channels != ws.feature_pool.channels:
        raise SaalError(f"{path}: the network takes {config.in_channels}-channel images but this run's images "
                        f"have {ws.feature_pool.channels} channel(s)")
    model = UNet(config)
    try:
        model.load_state_dict(load_state(path))
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise SaalError(f"{path}: not weights of a U-Net of width {config.base_width} ({first})") from None
    return model.eval(), path


def pool_features(ws: Workspace, weights: str | os.PathLike | None = None, *, ssl_seed: int | None = None,
                  device: str = "auto", progress: bool = True) -> np.ndarray:
    """SSL bottleneck features of the pool in pool order, extracted once and cached in ``features/``.

    The cache records which weights made it; other weights re-extract. The rows come back normalised as
    the preset says (``feature_norm``), for every strategy and query alike; the cache keeps them raw.
    """
    model, path = load_encoder(ws, weights, ssl_seed=ssl_seed, progress=progress)
    fingerprint = model_fingerprint(model)
    directory = ssl_root(ws, ssl_seed) / FEATURES_DIR
    made_by = {"model": fingerprint, "pool": ws.preset.feature_pool, "readout": ws.preset.feature_readout}
    try:
        cached = load_features(directory, expected_ids=ws.pool.ids)
        if {k: cached.meta.get(k, "bottleneck" if k == "readout" else None) for k in made_by} == made_by:
            return normalise_features(cached.features, ws.preset.feature_norm)
    except SelectionError:
        pass
    feats = extract_features(model, ws.feature_pool, pool=ws.preset.feature_pool, readout=ws.preset.feature_readout,
                             device=resolve_device(device), progress=progress)
    save_features(directory, ws.pool.ids, feats, {**made_by, "weights": str(path)})
    return normalise_features(feats, ws.preset.feature_norm)
