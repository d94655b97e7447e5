"""Cosub during segmentation finetuning (beyond Touvron et al., CVPR 2023).

The paper co-trains submodels for classification pretraining only. Here the
same idea runs while finetuning a segmenter: each image goes k times through
the backbone, whose per-sample stochastic depth makes each copy a different
random submodel, and each submodel's per-pixel prediction learns from the
labels and from the other submodels' detached softmax.
"""
from typing import Dict, Optional

import torch

from mmseg.models.losses import accuracy
from mmseg.models.utils import resize
from mmseg.utils import SampleList
from torch import Tensor

from cosub_mm.models.cosub_step import CosubStep
from cosub_mm.registry import MODELS
from .layer_decay_encoder_decoder import LayerDecayEncoderDecoder

__all__ = ['CosubEncoderDecoder']


@MODELS.register_module()
class CosubEncoderDecoder(CosubStep, LayerDecayEncoderDecoder):
    """Encoder-decoder whose training step co-trains k submodels per image.

    ``loss()`` repeats the batch k times, runs backbone, neck and decode
    head once on the repeated batch and scores the k per-pixel logit maps
    with :class:`~cosub_mm.models.CosubLoss` (``loss_type='ce'``: softmax
    cross-entropy against the labels and against the other submodels'
    detached softmax; pixels with the decode head's ``ignore_index`` count
    in no term). The decode head's own ``loss_decode`` is not used in
    training. The auxiliary head keeps its usual loss, on all k copies.
    Inference is the parent's: the full network. The step is the
    classifier's (:class:`~cosub_mm.models.cosub_step.CosubStep`).

    Args:
        cosub_loss (dict, optional): Config of the cosub loss. Defaults to
            ``dict(type='cosub_mm.CosubLoss', loss_type='ce')``; a missing
            ``ignore_index`` is taken from the decode head.
        efficient_drop_path (bool): Compute each residual branch only on
            the samples that keep it. Defaults to False.
        share_copies (bool): With ``efficient_drop_path``, compute a branch
            once for an image whose k copies are still identical. Defaults
            to True.
        **kwargs: The arguments of mmseg's ``EncoderDecoder``.

    Example:
        >>> model = dict(
        ...     type='cosub_mm.CosubEncoderDecoder',
        ...     backbone=dict(type='mmpretrain.DeiT3', drop_path_rate=0.1,
        ...                   out_type='featmap', ...),
        ...     cosub_loss=dict(type='cosub_mm.CosubLoss', loss_type='ce',
        ...                     lambda_=0.5),
        ...     efficient_drop_path=True, ...)
    """

    def __init__(self,
                 *args,
                 cosub_loss: Optional[dict] = None,
                 efficient_drop_path: bool = False,
                 share_copies: bool = True,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cfg = dict(cosub_loss or dict(type='cosub_mm.CosubLoss'))
        cfg.setdefault('loss_type', 'ce')
        cfg.setdefault('ignore_index', self.decode_head.ignore_index)
        self.init_cosub(cfg, efficient_drop_path, share_copies)

    def loss(self, inputs: Tensor,
             data_samples: SampleList) -> Dict[str, Tensor]:
        """Co-train k submodels on the batch.

        Args:
            inputs (Tensor): Images ``(N, C, H, W)``.
            data_samples (list[SegDataSample]): With ``gt_sem_seg``.

        Returns:
            dict: ``decode.loss_label`` and ``decode.loss_distill`` (their
            sum is the decode loss), ``decode.acc_seg`` of submodel 1,
            ``decode.agreement`` (fraction of labelled pixels where the k
            submodels predict the same class), the auxiliary losses and
            with a submodel plan its summary (``plan.submodels``, ...).
        """
        k = self.num_submodels
        feats = self.submodel_features(inputs)
        seg_logits = self.decode_head.forward(feats)
        seg_label = self.decode_head._stack_batch_gt(data_samples)
        seg_logits = resize(
            seg_logits,
            size=seg_label.shape[2:],
            mode='bilinear',
            align_corners=self.align_corners)
        seg_label = seg_label.squeeze(1)
        chunks = self.split(seg_logits)
        terms = self.cosub_loss.forward_all(chunks, seg_label)
        ignore = self.decode_head.ignore_index
        losses = {f'decode.{name}': value for name, value in terms.items()}
        with torch.no_grad():
            losses['decode.acc_seg'] = accuracy(
                chunks[0], seg_label, ignore_index=ignore)
        losses['decode.agreement'] = self.agreement(chunks,
                                                    seg_label != ignore)
        if self.with_auxiliary_head:
            losses.update(
                self._auxiliary_head_forward_train(feats,
                                                   list(data_samples) * k))
        losses.update({f'plan.{key}': value
                       for key, value in self.plan_log().items()})
        return losses
