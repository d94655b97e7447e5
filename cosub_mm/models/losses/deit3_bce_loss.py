"""The binary cross-entropy of DeiT III (Touvron et al., *DeiT III: Revenge
of the ViT*, ECCV 2022), as an mmpretrain head loss."""
from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from cosub_mm.registry import MODELS
from .cosub_loss import prepare_target

__all__ = ['DeiT3BCELoss']


@MODELS.register_module()
class DeiT3BCELoss(nn.Module):
    """BCE with logits averaged over samples × classes, targets ``> 0``.

    The baseline twin of the cosub recipes: ``torch.nn.BCEWithLogitsLoss()``
    on Mixup/CutMix targets binarized with ``targets.gt(0.0)`` (deit
    ``main.py --bce-loss``), i.e. :class:`~cosub_mm.models.CosubLoss` with
    one submodel and λ = 0. mmpretrain's ``CrossEntropyLoss(use_sigmoid=
    True)`` differs: it averages over samples only (a factor C) and keeps
    soft targets.

    Args:
        binarize_target (bool): Turn soft targets into ``target > 0``.
            Defaults to True.
        loss_weight (float): Multiplies the loss. Defaults to 1.0.

    Example:
        >>> head = dict(type='VisionTransformerClsHead', num_classes=1000,
        ...             in_channels=384, loss=dict(type='cosub_mm.DeiT3BCELoss'))
    """

    def __init__(self, binarize_target: bool = True,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.binarize_target = binarize_target
        self.loss_weight = loss_weight

    def forward(self,
                cls_score: Tensor,
                label: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[int] = None,
                reduction_override: Optional[str] = None,
                **kwargs) -> Tensor:
        """Compute the loss (mmpretrain head-loss signature).

        Args:
            cls_score (Tensor): Logits ``(N, C)``.
            label (Tensor): Indices ``(N,)`` or soft targets ``(N, C)``.
            weight, avg_factor, reduction_override: Accepted for the
                mmpretrain signature; the mean over ``N × C`` is always
                used (``weight`` is refused).
        """
        if weight is not None or reduction_override not in (None, 'mean'):
            raise ValueError('DeiT3BCELoss: only the plain mean over samples '
                             'x classes is supported (no weight, no '
                             'reduction override)')
        target, _ = prepare_target('DeiT3BCELoss', label, cls_score,
                                   binarize=self.binarize_target)
        return self.loss_weight * F.binary_cross_entropy_with_logits(
            cls_score, target)
