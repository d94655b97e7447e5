"""The cosub training step shared by the classifier and the segmentor.

Touvron et al., *Co-training 2^L Submodels for Visual Recognition*, CVPR
2023: the batch is repeated k times, goes once through the network, whose
per-sample stochastic depth makes each copy a different random submodel, and
the k outputs are scored with :class:`~cosub_mm.models.CosubLoss`.
:class:`CosubStep` holds what every cosub model needs around that: the loss,
the check that submodels can differ, the efficient drop path and the step's
submodel plan (:func:`~cosub_mm.models.drop_path.draw_submodel_plan`), the
BatchNorm guard, the repeat/split and the agreement metric.
"""
import logging
from contextlib import nullcontext
from typing import ContextManager, Dict, List, Optional, Sequence

import torch
from mmengine.logging import print_log
from torch import Tensor, nn

from cosub_mm.models.drop_path import (SubmodelPlan, copy_sharing_blocker,
                                       draw_submodel_plan,
                                       enable_efficient_drop_path,
                                       prepare_submodels)
from cosub_mm.registry import MODELS

__all__ = ['CosubStep']


class CosubStep:
    """Mixin of a cosub model; the host has ``backbone`` and
    ``extract_feat``.

    Call :meth:`init_cosub` at the end of the host's ``__init__`` and use
    :meth:`submodel_features` in its ``loss``.
    """

    cosub_loss: nn.Module
    share_copies: bool

    def init_cosub(self, cosub_loss: nn.Module | dict,
                   efficient_drop_path: bool, share_copies: bool) -> None:
        """Build the loss and prepare the backbone's submodels.

        Args:
            cosub_loss (dict | nn.Module): The cosub loss or its config.
            efficient_drop_path (bool): Compute each residual branch only on
                the samples that keep it
                (:func:`~cosub_mm.models.drop_path.enable_efficient_drop_path`),
                following a plan drawn once per step.
            share_copies (bool): With ``efficient_drop_path``, compute a
                branch once for an image whose k copies are still identical
                (twins of the :class:`~cosub_mm.models.drop_path.
                SubmodelPlan`).
        """
        owner = type(self).__name__
        if not isinstance(cosub_loss, nn.Module):
            cosub_loss = MODELS.build(cosub_loss)
        self.cosub_loss = cosub_loss
        prepare_submodels(owner, self.backbone)
        if efficient_drop_path:
            enable_efficient_drop_path(self.backbone)
        self.efficient_drop_path = efficient_drop_path
        self.share_copies = efficient_drop_path and share_copies
        self._sharing_blocker: Optional[str] = None
        #: the plan of the last planned training step
        self.last_plan: Optional[SubmodelPlan] = None

    @property
    def num_submodels(self) -> int:
        """Number k of submodels trained per image."""
        return self.cosub_loss.num_submodels

    def _submodels_context(self, inputs: Tensor, k: int) -> ContextManager:
        """The step's submodel plan, active; nothing without one.

        A plan needs the efficient drop path and drop decisions that are
        the backbone's only randomness (else, e.g. with a dropout, each
        branch draws its own, in the masked form's order).
        """
        self.last_plan = None
        if not (self.efficient_drop_path and self.training):
            return nullcontext()
        # checked every step: hooks may raise rates or dropout later
        blocker = copy_sharing_blocker(self.backbone)
        if blocker != self._sharing_blocker and blocker is not None:
            print_log(
                f'{type(self).__name__}: no submodel plan (hence no sharing '
                f'of identical copies) while {blocker}.',
                logger='current', level=logging.WARNING)
        self._sharing_blocker = blocker
        if blocker:
            return nullcontext()
        self.last_plan = draw_submodel_plan(self.backbone, k * len(inputs), k,
                                            inputs.device, self.share_copies)
        return self.last_plan.active()

    def plan_log(self) -> Dict[str, Tensor]:
        """The last plan's summary as loggable scalars (empty without one):
        ``submodels`` (distinct submodels trained), ``depth`` (mean fraction
        of branches kept) and ``shared`` (fraction of kept rows reused from
        a twin)."""
        if self.last_plan is None:
            return {}
        return dict(self.last_plan.log_tensors)

    def _check_batch(self, inputs: Tensor) -> None:
        if inputs.shape[0] < 2 and any(
                isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
                for m in self.modules()):
            # The k copies of one image would be BatchNorm's whole batch:
            # torch's own "more than 1 value per channel" check never fires
            # and the statistics silently degenerate.
            raise ValueError(
                f'{type(self).__name__}: a training batch of 1 image with '
                'BatchNorm layers in training mode: BatchNorm would normalise '
                'the k copies of one image against each other. Set '
                'train_dataloader.batch_size >= 2 (and drop_last=True), or '
                'use a model without BatchNorm.')

    def submodel_features(self, inputs: Tensor):
        """``extract_feat`` of the batch repeated k times (copies stacked).

        Args:
            inputs (Tensor): The (batch-augmented) images ``(N, C, H, W)``.

        Returns:
            The host's features of the ``k * N`` rows: copy ``i`` of image
            ``n`` is row ``i * N + n``.
        """
        self._check_batch(inputs)
        k = self.num_submodels
        with self._submodels_context(inputs, k):
            return self.extract_feat(torch.cat([inputs] * k, dim=0))

    def split(self, outputs: Tensor) -> List[Tensor]:
        """The k submodels' outputs of a ``(k * N, ...)`` tensor."""
        return list(outputs.chunk(self.num_submodels, dim=0))

    @staticmethod
    def agreement(logits: Sequence[Tensor],
                  valid: Optional[Tensor] = None) -> Tensor:
        """Fraction of predictions (images or pixels) where the k submodels
        predict the same class; ``valid`` masks labelled pixels."""
        with torch.no_grad():
            preds = torch.stack([z.argmax(dim=1) for z in logits])
            same = (preds == preds[:1]).all(dim=0)
            if valid is None:
                return same.float().mean()
            return (same & valid).sum() / valid.sum().clamp(min=1)
