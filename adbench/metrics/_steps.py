"""The compact form in which every ranking metric sees its input: tie groups in decreasing score order."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class Steps:
    """A score ranking summarised as increments in decreasing threshold order.

    Lowering a threshold ``t`` from +inf to -inf (a score is called anomalous when ``score >= t``, sklearn's
    convention) adds the samples from the highest score to the lowest; samples with equal scores (a tie
    group) are added together. Step ``i`` adds ``neg[i]`` negatives, ``pos[i]`` positives and
    ``weight[i]`` positive weight (AUPRO: ``1 / size of the pixel's defect region``) at once.

    The exact form (``ranking.exact_steps``) merges consecutive tie groups that hold only negatives into
    one step: that removes collinear points of the ROC, precision-recall and PRO curves and changes no
    metric. The binned form (``binned.binned_steps``) has one step per bin.

    Attributes:
        neg: (S,) int64 number of negatives added by each step.
        pos: (S,) int64 number of positives added by each step.
        weight: (S,) float64 positive weight added by each step, or None when not requested.
    """

    neg: Tensor
    pos: Tensor
    weight: Tensor | None = None

    @property
    def n_neg(self) -> int:
        """Total number of negatives."""
        return int(self.neg.sum())

    @property
    def n_pos(self) -> int:
        """Total number of positives."""
        return int(self.pos.sum())
