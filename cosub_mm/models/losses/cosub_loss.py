"""The cosub loss of Touvron et al., *Co-training 2^L Submodels for Visual
Recognition* (CVPR 2023, arXiv 2212.04884).

For two submodels with logits z1, z2 of the same images and targets y::

    L = (1 - λ)/2 · [ℓ(z1, y) + ℓ(z2, y)]
        + λ/2 · [ℓ(z1, sg(σ(z2))) + ℓ(z2, sg(σ(z1)))]

with ℓ the binary cross-entropy with logits averaged over samples × classes,
σ the sigmoid and sg a stop-gradient. λ = 0.5 gives the authors' four terms of
0.25 (facebookresearch/deit ``engine.py``, ``--cosub``).

Under mixed precision (``tools/train.py --amp``) the logits arrive in fp16 or
bf16; the loss upcasts them and runs with autocast off, so the teacher's
sigmoid and every term are fp32 (deit computes ``outputs.detach().sigmoid()``
inside ``torch.cuda.amp.autocast``, i.e. in fp16).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cosub_mm.registry import MODELS

__all__ = ['CosubLoss', 'prepare_target']


@MODELS.register_module()
class CosubLoss(nn.Module):
    """Co-training loss between k submodels of one network.

    Each submodel learns from the target and from its teacher: the mean
    prediction of the other k - 1 submodels, detached.

    Args:
        lambda_ (float): Weight λ of the distillation terms, in [0, 1].
            Defaults to 0.5 (the paper).
        binarize_target (bool): With ``loss_type='bce'``, turn soft targets
            (Mixup/CutMix) into ``target > 0`` as DeiT III does. Defaults to
            True.
        loss_type (str): ``'bce'`` (binary cross-entropy with logits against
            the teacher's sigmoid, the paper) or ``'ce'`` (softmax
            cross-entropy against the teacher's softmax). Defaults to 'bce'.
        num_submodels (int): k >= 2. Defaults to 2 (the paper).
        ignore_index (int, optional): With index targets, positions with
            this label count in no term, label or distillation (for
            segmentation). Defaults to None.
        loss_weight (float): Multiplies both terms. Defaults to 1.0.
        label_smooth_val (float): ε in [0, 1): the label terms' targets
            become ``(1 - ε)·y + ε/C`` (after binarization), as timm's
            ``Mixup(label_smoothing=ε)`` makes deit's targets before its
            cosub BCE (``--smoothing``); the teachers are not smoothed.
            Defaults to 0.0.

    Example:
        >>> loss = CosubLoss()
        >>> z1, z2, y = torch.randn(4, 10), torch.randn(4, 10), torch.arange(4)
        >>> terms = loss(z1, z2, y)
        >>> total = terms['loss_label'] + terms['loss_distill']
    """

    def __init__(self,
                 lambda_: float = 0.5,
                 binarize_target: bool = True,
                 loss_type: str = 'bce',
                 num_submodels: int = 2,
                 ignore_index: Optional[int] = None,
                 loss_weight: float = 1.0,
                 label_smooth_val: float = 0.0) -> None:
        super().__init__()
        if loss_type not in ('bce', 'ce'):
            raise ValueError(
                f"CosubLoss: loss_type must be 'bce' or 'ce', got "
                f'{loss_type!r}')
        if not isinstance(num_submodels, int) or num_submodels < 2:
            raise ValueError('CosubLoss: num_submodels must be an integer '
                             f'>= 2, got {num_submodels!r}')
        if not 0.0 <= float(label_smooth_val) < 1.0:
            raise ValueError('CosubLoss: label_smooth_val must be in [0, 1), '
                             f'got {label_smooth_val}')
        self.lambda_ = lambda_  # validated by the property setter
        self.binarize_target = binarize_target
        self.label_smooth_val = float(label_smooth_val)
        self.loss_type = loss_type
        self.num_submodels = num_submodels
        self.ignore_index = ignore_index
        self.loss_weight = loss_weight

    @property
    def lambda_(self) -> float:
        """Weight of the distillation terms (hooks may schedule it)."""
        return self._lambda

    @lambda_.setter
    def lambda_(self, value: float) -> None:
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(
                f'CosubLoss: lambda_ must be in [0, 1], got {value}')
        self._lambda = float(value)

    def forward(self, logits_a: Tensor, logits_b: Tensor,
                target: Tensor, *more_logits: Tensor) -> Dict[str, Tensor]:
        """Compute the label and distillation terms.

        Args:
            logits_a (Tensor): Logits of submodel 1, ``(N, C, ...)``.
            logits_b (Tensor): Logits of submodel 2, same shape.
            target (Tensor): Class indices ``(N, ...)`` or soft/one-hot
                targets ``(N, C, ...)``.
            *more_logits (Tensor): Logits of submodels 3..k when
                ``num_submodels > 2``.

        Returns:
            dict: ``loss_label`` = (1-λ)/k Σ ℓ(z_i, y) and ``loss_distill`` =
            λ/k Σ ℓ(z_i, sg(teacher_i)); the loss is their sum.
        """
        logits = (logits_a, logits_b) + tuple(more_logits)
        return self.forward_all(logits, target)

    def forward_all(self, logits: Sequence[Tensor],
                    target: Tensor) -> Dict[str, Tensor]:
        """Same as :meth:`forward`, with the k logits in one sequence."""
        k = len(logits)
        if k != self.num_submodels:
            raise ValueError(f'CosubLoss: expected {self.num_submodels} '
                             f'logits (num_submodels), got {k}')
        shape = logits[0].shape
        for i, z in enumerate(logits):
            if z.shape != shape:
                raise ValueError(
                    f'CosubLoss: logits of submodel {i + 1} have shape '
                    f'{tuple(z.shape)}, submodel 1 has {tuple(shape)}')
        if logits[0].dim() < 2:
            raise ValueError('CosubLoss: logits must be (N, C, ...), got '
                             f'shape {tuple(shape)}')
        # fp16/bf16 logits (AMP) -> fp32; fp32/fp64 stay as they are
        logits = [z.to(torch.promote_types(z.dtype, torch.float32))
                  for z in logits]
        # CPU autocast would run log_softmax in bf16, CUDA autocast the
        # sigmoid in fp16: the loss is computed with autocast off
        with torch.autocast(logits[0].device.type, enabled=False):
            return self._terms(logits, target)

    def _terms(self, logits: List[Tensor],
               target: Tensor) -> Dict[str, Tensor]:
        """The label and distillation terms of full-precision logits."""
        k = len(logits)
        target, valid = self._prepare_target(target, logits[0])
        if self.label_smooth_val > 0:
            eps = self.label_smooth_val
            target = target * (1 - eps) + eps / target.shape[1]

        if self.loss_type == 'bce':
            probs = [z.detach().sigmoid() for z in logits]
        else:
            probs = [z.detach().softmax(dim=1) for z in logits]
        label_terms, distill_terms = [], []
        for i, z in enumerate(logits):
            teacher = sum(p for j, p in enumerate(probs) if j != i) / (k - 1)
            label_terms.append(self._criterion(z, target, valid))
            distill_terms.append(self._criterion(z, teacher, valid))
        scale = self.loss_weight / k
        return dict(
            loss_label=(1 - self.lambda_) * scale * sum(label_terms),
            loss_distill=self.lambda_ * scale * sum(distill_terms))

    def _prepare_target(self, target: Tensor,
                        logits: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """Return ``(target, valid)``; soft targets ``(N, C, ...)``."""
        return prepare_target(
            'CosubLoss', target, logits, self.ignore_index,
            binarize=self.loss_type == 'bce' and self.binarize_target)

    def _criterion(self, logits: Tensor, target: Tensor,
                   valid: Optional[Tensor]) -> Tensor:
        """ℓ: BCE averaged over samples × classes, or soft-target CE."""
        if self.loss_type == 'bce':
            loss = F.binary_cross_entropy_with_logits(
                logits, target, reduction='none')
            if valid is None:
                return loss.mean()
            mask = valid.unsqueeze(1).expand_as(loss)
            return loss[mask].sum() / mask.sum().clamp(min=1)
        loss = -(target * F.log_softmax(logits, dim=1)).sum(dim=1)
        if valid is None:
            return loss.mean()
        return loss[valid].sum() / valid.sum().clamp(min=1)

    def extra_repr(self) -> str:
        return (f'lambda_={self.lambda_}, loss_type={self.loss_type!r}, '
                f'num_submodels={self.num_submodels}, '
                f'binarize_target={self.binarize_target}, '
                f'label_smooth_val={self.label_smooth_val}')


def prepare_target(owner: str,
                   target: Tensor,
                   logits: Tensor,
                   ignore_index: Optional[int] = None,
                   binarize: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
    """Soft targets shaped like ``logits`` from indices or soft targets.

    Shared by :class:`CosubLoss` and :class:`DeiT3BCELoss`.

    Args:
        owner (str): The loss's name, for the error messages.
        target (Tensor): Class indices ``(N, ...)`` or soft targets shaped
            like ``logits`` ``(N, C, ...)``.
        logits (Tensor): The predictions ``(N, C, ...)``.
        ignore_index (int, optional): Index targets equal to it are
            invalid (returned in ``valid``).
        binarize (bool): Turn soft targets into ``target > 0`` (deit's
            ``--bce-loss`` on Mixup/CutMix targets).

    Returns:
        tuple: ``(target, valid)``; ``valid`` is None unless
        ``ignore_index`` is given for index targets.
    """
    num_classes = logits.shape[1]
    valid = None
    if target.dim() == logits.dim() - 1:  # class indices
        if target.shape != logits.shape[:1] + logits.shape[2:]:
            raise ValueError(
                f'{owner}: index target shape {tuple(target.shape)} '
                f'does not match logits {tuple(logits.shape)}')
        target = target.long()
        if ignore_index is not None:
            valid = target != ignore_index
            target = target.masked_fill(~valid, 0)
        # eager only: the check syncs with the host and would break a
        # compiled graph
        if not torch.compiler.is_compiling() and target.numel() and (
                target.min() < 0 or target.max() >= num_classes):
            raise ValueError(
                f'{owner}: target labels must be in [0, {num_classes})'
                f', got [{int(target.min())}, {int(target.max())}]')
        target = F.one_hot(target, num_classes).movedim(-1, 1)
    elif target.shape != logits.shape:
        raise ValueError(
            f'{owner}: soft target shape {tuple(target.shape)} does '
            f'not match logits {tuple(logits.shape)}')
    target = target.to(logits.dtype)
    if binarize:
        target = target.gt(0.0).to(logits.dtype)
    return target, valid
