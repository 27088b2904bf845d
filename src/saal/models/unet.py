"""The classic U-Net (Ronneberger et al., 2015), shared by every stage.

One class serves restoration pretraining (output = image channels, sigmoid range)
and segmentation (output = 2-class logits): only the 1x1 ``head`` differs, so SSL
weights transfer into the segmentation net by skipping ``head.*`` (or by keeping
only ``encoder.*``, the other option the paper compares).

Layout (base width ``w``, bilinear up-sampling as in the paper's 512-d features
at ``w = 64``)::

    encoder.inc    DoubleConv(in, w)            H
    encoder.down1  pool + DoubleConv(w, 2w)     H/2
    encoder.down2  pool + DoubleConv(2w, 4w)    H/4
    encoder.down3  pool + DoubleConv(4w, 8w)    H/8
    encoder.down4  pool + DoubleConv(8w, 8w)    H/16   <- bottleneck (8w channels)
    decoder.up1..4 upsample + concat skip + DoubleConv
    head           1x1 conv -> out_channels

``forward(x, return_bottleneck=True)`` also returns the bottleneck map, which the
selection stage pools into one feature vector per image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """Everything needed to rebuild a :class:`UNet` (saved next to its weights)."""

    in_channels: int = 1
    out_channels: int = 2
    base_width: int = 16
    dropout: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class DoubleConv(nn.Sequential):
    """(3x3 conv -> BatchNorm -> ReLU) twice; the conv bias is redundant before BN."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_ch, out_ch))


class Up(nn.Module):
    """Bilinear x2 up-sampling, concatenation with the skip, DoubleConv."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = DoubleConv(in_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([skip, x], dim=1))


class Encoder(nn.Module):
    def __init__(self, in_channels: int, w: int):
        super().__init__()
        self.inc = DoubleConv(in_channels, w)
        self.down1 = Down(w, 2 * w)
        self.down2 = Down(2 * w, 4 * w)
        self.down3 = Down(4 * w, 8 * w)
        self.down4 = Down(8 * w, 8 * w)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        return [x1, x2, x3, x4, x5]


class Decoder(nn.Module):
    def __init__(self, w: int, dropout: float):
        super().__init__()
        self.up1 = Up(16 * w, 4 * w)
        self.up2 = Up(8 * w, 2 * w)
        self.up3 = Up(4 * w, w)
        self.up4 = Up(2 * w, w)
        # Dropout is what MC-dropout queries sample; Dropout2d(0) is the identity.
        self.drop = nn.Dropout2d(dropout)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x1, x2, x3, x4, x5 = feats
        x = self.up1(self.drop(x5), x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.drop(x)


class UNet(nn.Module):
    """U-Net with a named encoder, decoder and 1x1 head (see module docstring)."""

    def __init__(self, config: UNetConfig | None = None, **overrides):
        super().__init__()
        config = config or UNetConfig()
        if overrides:
            config = UNetConfig(**{**config.to_dict(), **overrides})
        self.config = config
        w = config.base_width
        self.encoder = Encoder(config.in_channels, w)
        self.decoder = Decoder(w, config.dropout)
        self.head = nn.Conv2d(w, config.out_channels, 1)

    @property
    def feature_channels(self) -> int:
        """Channels of the bottleneck map (512 at the paper's width 64)."""
        return 8 * self.config.base_width

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """The deepest encoder map alone (no decoder work): what selection pools."""
        return self.encoder(x)[-1]

    def forward(self, x: torch.Tensor, return_bottleneck: bool = False):
        feats = self.encoder(x)
        out = self.head(self.decoder(feats))
        return (out, feats[-1]) if return_bottleneck else out


TRANSFER_MODES = ("none", "all-but-head", "encoder")
#: The first convolution: the one tensor whose input channels follow the images' (gray 1, RGB 3).
FIRST_CONV = "encoder.inc.0.weight"


def adapt_input_channels(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """A first-convolution ``weight`` (out, c, k, k) made to take ``channels`` input channels.

    Gray -> RGB: each colour channel gets the gray weight / 3, so an RGB image with R = G = B = g gives the
    response the gray network gave to g; RGB -> gray: the weights are summed over the channels, the same
    response to a gray image read as R = G = B. Lets a pretraining on one kind of image initialise a
    segmenter of the other (RGB features with a gray segmenter, and the reverse).
    """
    have = weight.shape[1]
    if have == channels:
        return weight
    if have == 1:
        return weight.repeat(1, channels, 1, 1) / channels
    if channels == 1:
        return weight.sum(dim=1, keepdim=True)
    raise ValueError(f"cannot map {have} input channels to {channels}")


def transfer_weights(target: UNet, source_state: Mapping[str, torch.Tensor], mode: str = "all-but-head") -> list[str]:
    """Copy pretrained weights into ``target`` and return the names copied.

    ``all-but-head`` copies encoder and decoder (the head's shape differs between
    restoration and segmentation); ``encoder`` copies the encoder alone; ``none``
    copies nothing (random initialisation baseline). The first convolution is
    adapted when the pretraining saw gray images and the target takes RGB, or the
    reverse (:func:`adapt_input_channels`); any other shape mismatch (e.g. SSL run
    at another width) is an error, never a silent partial load.
    """
    if mode not in TRANSFER_MODES:
        raise ValueError(f"unknown transfer mode {mode!r}; choose from {TRANSFER_MODES}")
    if mode == "none":
        return []
    prefixes = ("encoder.",) if mode == "encoder" else ("encoder.", "decoder.")
    own = target.state_dict()
    picked = {k: v for k, v in source_state.items() if k.startswith(prefixes)}
    if FIRST_CONV in picked and FIRST_CONV in own:
        picked[FIRST_CONV] = adapt_input_channels(picked[FIRST_CONV], own[FIRST_CONV].shape[1])
    missing = [k for k in own if k.startswith(prefixes) and k not in picked]
    if missing:
        raise ValueError(f"pretrained weights lack {len(missing)} tensors, e.g. {missing[0]!r}")
    for k, v in picked.items():
        if k not in own or own[k].shape != v.shape:
            raise ValueError(
                f"pretrained tensor {k!r} has shape {tuple(v.shape)}, the network expects "
                f"{tuple(own[k].shape) if k in own else 'no such tensor'} (different width or channels?)"
            )
    target.load_state_dict(picked, strict=False)
    return sorted(picked)
