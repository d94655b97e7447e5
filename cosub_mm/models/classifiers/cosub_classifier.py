"""An mmpretrain ``ImageClassifier`` trained with cosub (Touvron et al.,
*Co-training 2^L Submodels for Visual Recognition*, CVPR 2023)."""
import logging
from contextlib import nullcontext
from typing import ContextManager, Dict, List, Optional

import torch
from mmengine.logging import print_log
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.structures import DataSample
from torch import Tensor

from cosub_mm.models.backbones import (copy_sharing_blocker,
                                       enable_efficient_drop_path)
from cosub_mm.models.utils import prepare_submodels, shared_copies
from cosub_mm.registry import MODELS

__all__ = ['CosubClassifier']


@MODELS.register_module()
class CosubClassifier(ImageClassifier):
    """Image classifier whose training step co-trains k submodels.

    In ``loss()`` the (already Mixup/CutMix-augmented) batch is repeated k
    times along the batch dimension and goes once through backbone, neck and
    head; the per-sample stochastic depth of the backbone makes each copy a
    different random submodel. The k logits are split and scored with
    :class:`~cosub_mm.models.CosubLoss`. ``predict()`` and
    ``extract_feat()`` are the parent's: the full network at test time.

    Args:
        cosub_loss (dict): Config of the cosub loss. Defaults to
            ``dict(type='cosub_mm.CosubLoss')`` (λ = 0.5, BCE, k = 2).
        drop_path_rule (str, optional): ``'uniform'`` (every block drops
            with the backbone's largest rate, as the authors do) or
            ``'linear'`` (0 at the first block up to that rate). None keeps
            the rates the backbone built. Defaults to None.
        drop_path_rate (float, optional): The rate that ``drop_path_rule``
            spreads; None takes the backbone's largest block rate.
        efficient_drop_path (bool): Compute each residual branch only on
            the samples that keep it (the paper's implementation; see
            :func:`~cosub_mm.models.backbones.enable_efficient_drop_path`)
            instead of masking it. Same function, less compute. Supported
            for ViT, DeiT III, Swin, ConvNeXt and PiT. Defaults to False.
        share_copies (bool): With ``efficient_drop_path``, also compute a
            branch once for an image whose k copies are still identical
            (same drop decisions so far) and all keep it
            (:func:`~cosub_mm.models.utils.shared_copies`): same function,
            less compute. Turned off by itself, with a warning, while the
            backbone has dropout or masked drop paths outside the efficient
            blocks. Defaults to True.
        **kwargs: The arguments of ``mmpretrain.ImageClassifier``
            (``backbone``, ``neck``, ``head``, ``data_preprocessor``,
            ``train_cfg`` with Mixup/CutMix ``augments``, ``init_cfg``).

    Example:
        >>> model = dict(
        ...     type='cosub_mm.CosubClassifier',
        ...     backbone=dict(type='VisionTransformer', arch='deit-small',
        ...                   drop_path_rate=0.05),
        ...     head=dict(type='VisionTransformerClsHead', num_classes=1000,
        ...               in_channels=384),
        ...     drop_path_rule='uniform',
        ...     cosub_loss=dict(type='cosub_mm.CosubLoss', lambda_=0.5))
    """

    def __init__(self,
                 *args,
                 cosub_loss: Optional[dict] = None,
                 drop_path_rule: Optional[str] = None,
                 drop_path_rate: Optional[float] = None,
                 efficient_drop_path: bool = False,
                 share_copies: bool = True,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.head is None:
            raise ValueError('CosubClassifier needs a head: cosub compares '
                             'the logits of two submodels')
        cosub_loss = cosub_loss or dict(type='cosub_mm.CosubLoss')
        if not isinstance(cosub_loss, torch.nn.Module):
            cosub_loss = MODELS.build(cosub_loss)
        self.cosub_loss = cosub_loss
        prepare_submodels('CosubClassifier', self.backbone, drop_path_rule,
                          drop_path_rate)
        self.drop_path_rule = drop_path_rule
        if efficient_drop_path:
            enable_efficient_drop_path(self.backbone)
        self.share_copies = efficient_drop_path and share_copies
        self._sharing_blocker: Optional[str] = None

    def _copies_context(self, k: int) -> ContextManager:
        """:func:`shared_copies` when sharing is on and exact, else nothing."""
        if not self.share_copies:
            return nullcontext()
        # checked every step: hooks may raise rates or dropout later
        blocker = copy_sharing_blocker(self.backbone)
        if blocker != self._sharing_blocker and blocker is not None:
            print_log(
                f'CosubClassifier: share_copies is off while {blocker} '
                '(copies could differ outside the efficient drop path).',
                logger='current', level=logging.WARNING)
        self._sharing_blocker = blocker
        return nullcontext() if blocker else shared_copies(k)

    @property
    def num_submodels(self) -> int:
        """Number k of submodels trained per image."""
        return self.cosub_loss.num_submodels

    def loss(self, inputs: Tensor,
             data_samples: List[DataSample]) -> Dict[str, Tensor]:
        """Co-train k submodels on the batch.

        Args:
            inputs (Tensor): Batch-augmented images ``(N, C, H, W)``.
            data_samples (list[DataSample]): With ``gt_label`` or, after
                Mixup/CutMix, ``gt_score``.

        Returns:
            dict: ``loss_label`` and ``loss_distill`` (their sum is the
            loss) and ``agreement``, the fraction of images whose k
            submodels predict the same class.
        """
        k = self.num_submodels
        if inputs.shape[0] < 2 and any(
                isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                and m.training for m in self.modules()):
            # The k copies of one image would be BatchNorm's whole batch:
            # torch's own "more than 1 value per channel" check never fires
            # and the statistics silently degenerate.
            raise ValueError(
                'CosubClassifier: a training batch of 1 image with BatchNorm '
                'layers in training mode: BatchNorm would normalise the k '
                'copies of one image against each other. Set '
                'train_dataloader.batch_size >= 2 (and drop_last=True), or '
                'use a backbone without BatchNorm.')
        with self._copies_context(k):
            feats = self.extract_feat(torch.cat([inputs] * k, dim=0))
        logits = self.head(feats).chunk(k, dim=0)
        if 'gt_score' in data_samples[0]:
            target = torch.stack([s.gt_score for s in data_samples])
        else:
            target = torch.cat([s.gt_label for s in data_samples])
        losses = self.cosub_loss.forward_all(logits, target)
        with torch.no_grad():
            preds = torch.stack([z.argmax(dim=1) for z in logits])
            agree = (preds == preds[:1]).all(dim=0).float().mean()
        losses['agreement'] = agree
        return losses
