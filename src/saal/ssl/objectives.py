"""What a pretraining run minimises: Models Genesis restoration, SimCLR's contrastive loss, or both.

* ``genesis`` -- restore Models Genesis-damaged images (:mod:`.transforms`), MSE
  to the original: the paper's warm-up, which trains encoder *and* decoder;
* ``contrastive`` -- two random views per image (:mod:`.views`) through the
  encoder and a projection head, NT-Xent (:mod:`.contrastive`): features in which
  similar images are close, the encoder only;
* ``genesis+contrastive`` -- the sum ``restore + contrastive_weight x NT-Xent``
  on the same batch: the decoder still learns to restore (for the segmentation
  initialisation) while the encoder's features are shaped by both.

:class:`PretrainNet` holds the U-Net and the head as one module with one forward
call, so that data-parallel training (DDP) sees every parameter a step uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..models.unet import UNet
from ..runtime import MixedPrecision
from .contrastive import ProjectionHead, nt_xent
from .transforms import GenesisConfig, corrupt
from .views import ViewConfig, two_views

OBJECTIVES = ("genesis", "contrastive", "genesis+contrastive")


class PretrainNet(nn.Module):
    """The U-Net plus, for a contrastive objective, the projection head on its pooled bottleneck."""

    def __init__(self, unet: UNet, head: ProjectionHead | None):
        super().__init__()
        self.unet = unet
        self.head = head

    def forward(self, damaged: torch.Tensor | None, views: torch.Tensor | None
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Restoration logits of ``damaged`` and projections of ``views`` (both views stacked), each when given."""
        restored = None if damaged is None else self.unet(damaged)
        projected = None if views is None else self.head(self.unet.bottleneck(views))
        return restored, projected


@dataclass
class Draw:
    """The random material of one batch: damaged inputs and targets, and/or two stacked views."""

    damaged: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    views: torch.Tensor | None = None


class Objective:
    """One pretraining objective: draws a batch's random material and computes its loss terms."""

    def __init__(self, name: str, genesis: GenesisConfig, views: ViewConfig, temperature: float,
                 contrastive_weight: float):
        self.name = name
        self.genesis, self.view_config = genesis, views
        self.temperature, self.weight = temperature, contrastive_weight

    @property
    def restores(self) -> bool:
        return self.name in ("genesis", "genesis+contrastive")

    @property
    def contrasts(self) -> bool:
        return self.name in ("contrastive", "genesis+contrastive")

    def draw(self, clean: torch.Tensor, generator: torch.Generator) -> Draw:
        """Damage and/or two views of a float ``(B, C, S, S)`` batch, always drawn in this order."""
        out = Draw()
        if self.restores:
            out.damaged, out.targets = corrupt(clean, generator, self.genesis)
        if self.contrasts:
            out.views = torch.cat(two_views(clean, generator, self.view_config))
        return out

    def terms(self, net: nn.Module, draw: Draw, precision: MixedPrecision, device: torch.device,
              to_net) -> dict[str, torch.Tensor]:
        """Per-image loss terms: ``restore`` (MSE per image) and/or ``contrastive`` (NT-Xent of the batch)."""
        with precision.autocast(device):
            restored, projected = net(None if draw.damaged is None else to_net(draw.damaged),
                                      None if draw.views is None else to_net(draw.views))
        out = {}
        if restored is not None:
            out["restore"] = (torch.sigmoid(restored.float()) - draw.targets).pow(2).mean(dim=(1, 2, 3))
        if projected is not None:
            z1, z2 = projected.float().chunk(2)
            out["contrastive"] = nt_xent(z1, z2, self.temperature)
        return out

    def total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The scalar that is minimised: mean restoration MSE + ``contrastive_weight`` x NT-Xent."""
        loss = terms["restore"].mean() if "restore" in terms else 0.0
        if "contrastive" in terms:
            loss = loss + self.weight * terms["contrastive"]
        return loss


def identity_mse(draw: Draw) -> torch.Tensor:
    """Per-image MSE of the trivial restoration, returning the damaged input unchanged."""
    return (draw.damaged - draw.targets).pow(2).mean(dim=(1, 2, 3))
