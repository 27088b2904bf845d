"""SimCLR's contrastive objective on the U-Net encoder (Chen et al., ICML 2020), written from the paper.

The restoration objective of Models Genesis rewards the encoder for whatever
helps to repaint pixels; the cold start needs features in which *similar lesions
are close*. SimCLR trains exactly that: two random views of each image
(:mod:`saal.ssl.views`) pass through the encoder, its bottleneck is average-pooled
and sent through a small projection head, and the NT-Xent loss pulls the two
views of an image together and pushes the other images of the batch away.

Why SimCLR among the contrastive / self-distillation families: it needs no
momentum encoder, queue or teacher (MoCo, BYOL, DINO), so a run is one network,
deterministic and resumable exactly like the restoration run; its known need for
large batches matters little here because a pool of a few hundred to a few
thousand images is covered by a batch of 64-128 many times per epoch. The
selection features stay the pooled encoder bottleneck (the projection head is
discarded, as in the paper).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ProjectionHead(nn.Module):
    """SimCLR's head: pooled bottleneck -> hidden layer with ReLU -> ``out_dim`` projection."""

    def __init__(self, in_dim: int, hidden_dim: int | None = None, out_dim: int = 64):
        super().__init__()
        hidden_dim = hidden_dim or in_dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))

    def forward(self, bottleneck: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` bottleneck map -> ``(B, out_dim)`` projection."""
        return self.net(F.adaptive_avg_pool2d(bottleneck, 1).flatten(1))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2,
            rows: slice | None = None) -> torch.Tensor:
    """The normalised-temperature cross-entropy of SimCLR for ``B`` positive pairs ``(z1[i], z2[i])``.

    Each of the ``2B`` projections must pick its partner among the other ``2B - 1``
    by cosine similarity / ``temperature``; the loss is the mean cross-entropy
    (``log(2B - 1)`` for random projections, 0 for a perfect match).

    ``rows`` (a slice of the ``B`` pairs) averages only the cross-entropies of
    those pairs' ``2 x len`` projections, still against all ``2B`` candidates: under
    DDP each rank passes the gathered global batch and its own share, so the mean
    of the ranks' losses is the loss of the whole batch.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"projections must both be (B, D), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    anchors = torch.arange(2 * b, device=z.device)
    if rows is not None:
        pairs = torch.arange(b, device=z.device)[rows]
        anchors = torch.cat([pairs, pairs + b])
    logits = z[anchors] @ z.T / temperature
    logits[torch.arange(len(anchors), device=z.device), anchors] = float("-inf")  # not its own candidate
    return F.cross_entropy(logits, (anchors + b) % (2 * b))
