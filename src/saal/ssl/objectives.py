"""What a pretraining run minimises: Models Genesis restoration, SimCLR's contrastive loss, or both.

* ``genesis`` -- restore Models Genesis-damaged images (:mod:`.transforms`), MSE
  to the original: the paper's warm-up, which trains encoder *and* decoder;
* ``contrastive`` -- two random views per image (:mod:`.views`) through the
  encoder and a projection head, NT-Xent (:mod:`.contrastive`): features in which
  similar images are close, the encoder only;
* ``genesis+contrastive`` -- the sum ``restore + contrastive_weight x NT-Xent``
  on the same batch: the decoder still learns to restore (for the segmentation
  initialisation) while the encoder's features are shaped by both.

Under DDP the NT-Xent of a step is the one of the *global* batch: each rank
gathers the projections of all ranks (:meth:`Objective.contrast`). A contrastive
loss depends on its negatives, so per-rank negatives would make a run with N
processes a run with an N times smaller batch.

:func:`describe_objective` puts an objective into words for the people who read
its results (the run report, ``samples.png``'s columns), so that they are told
what the run they look at trained.

:class:`PretrainNet` holds the U-Net and the head as one module with one forward
call, so that data-parallel training (DDP) sees every parameter a step uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import SSL_OBJECTIVES
from ..models.unet import UNet
from ..runtime import MixedPrecision
from .contrastive import ProjectionHead, nt_xent
from .distributed import DistContext
from .transforms import GenesisConfig, corrupt
from .views import ViewConfig, two_views

OBJECTIVES = SSL_OBJECTIVES
RESTORING = ("genesis", "genesis+contrastive")  # these train the decoder; the others never run it
CONTRASTING = ("contrastive", "genesis+contrastive")

_TRAINS = {
    "genesis": "The encoder and the decoder learned to restore Models Genesis-damaged images (MSE to the original)",
    "contrastive": ("The encoder and a projection head learned to match two random views of each image against the "
                    "other images of the batch (SimCLR); the decoder was not trained"),
    "genesis+contrastive": ("The encoder and the decoder learned to restore Models Genesis-damaged images while the "
                            "encoder also learned to match two random views of each image (SimCLR)"),
}


def sample_columns(objective: str) -> tuple[str, str, str]:
    """The column titles of ``samples.png``: what the network makes of an image, or the contrastive views.

    A restoring objective shows its restorations (the decoder's work); the
    contrastive objective alone has no output image to show, so it shows the two
    views the encoder learned to match.
    """
    return ("damaged input", "restored", "original") if objective in RESTORING else ("view 1", "view 2", "original")


def describe_objective(objective: str) -> str:
    """What a run with ``objective`` trained and what its ``samples.png`` shows, as two sentences for people.

    The run report's caption is built from it, so that a restoration run and a
    contrastive run are each described by what they actually did.
    """
    return f"{_TRAINS[objective]}. Held-out pool images: {' | '.join(sample_columns(objective))}."


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
        return self.name in RESTORING

    @property
    def contrasts(self) -> bool:
        return self.name in CONTRASTING

    def draw(self, clean: torch.Tensor, generator: torch.Generator) -> Draw:
        """Damage and/or two views of a float ``(B, C, S, S)`` batch, always drawn in this order."""
        out = Draw()
        if self.restores:
            out.damaged, out.targets = corrupt(clean, generator, self.genesis)
        if self.contrasts:
            out.views = torch.cat(two_views(clean, generator, self.view_config))
        return out

    def outputs(self, net: nn.Module, draw: Draw, precision: MixedPrecision, device: torch.device,
                to_net) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Per-image restoration MSE and the float ``(B, 2, D)`` projections of the two views, each when drawn."""
        with precision.autocast(device):
            restored, projected = net(None if draw.damaged is None else to_net(draw.damaged),
                                      None if draw.views is None else to_net(draw.views))
        restore = (None if restored is None
                   else (torch.sigmoid(restored.float()) - draw.targets).pow(2).mean(dim=(1, 2, 3)))
        pairs = None if projected is None else torch.stack(projected.float().chunk(2), dim=1)
        return restore, pairs

    def contrast(self, pairs: torch.Tensor, ctx: DistContext | None = None) -> torch.Tensor:
        """NT-Xent of ``(B, 2, D)`` projection pairs; under DDP, of this rank's pairs against the global batch.

        Every rank gathers all ranks' pairs (differentiably) and averages the
        cross-entropies of its own rows only. The ranks' losses then average to the
        loss of the global batch, and each rank's projections receive the gradient
        of the *sum* of the ranks' losses (the gather's backward), which DDP's
        gradient averaging divides by the number of ranks: the same gradient as one
        process with the whole batch.
        """
        rows = None
        if ctx is not None and ctx.enabled:
            rows = slice(ctx.rank * len(pairs), (ctx.rank + 1) * len(pairs))
            pairs = ctx.gather_rows(pairs)
        return nt_xent(pairs[:, 0], pairs[:, 1], self.temperature, rows)

    def terms(self, net: nn.Module, draw: Draw, precision: MixedPrecision, device: torch.device,
              to_net, ctx: DistContext | None = None) -> dict[str, torch.Tensor]:
        """Loss terms of a training step: ``restore`` (MSE per image) and/or ``contrastive`` (NT-Xent).

        ``ctx`` is the DDP context (None or a world of one: a single process), which
        makes the NT-Xent the global batch's (:meth:`contrast`).
        """
        restore, pairs = self.outputs(net, draw, precision, device, to_net)
        out = {}
        if restore is not None:
            out["restore"] = restore
        if pairs is not None:
            out["contrastive"] = self.contrast(pairs, ctx)
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
