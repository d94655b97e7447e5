"""An mmpretrain ``ImageClassifier`` trained with cosub (Touvron et al.,
*Co-training 2^L Submodels for Visual Recognition*, CVPR 2023)."""
from typing import Dict, List, Optional

import torch
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.structures import DataSample
from torch import Tensor

from cosub_mm.models.cosub_step import CosubStep
from cosub_mm.registry import MODELS

__all__ = ['CosubClassifier']


@MODELS.register_module()
class CosubClassifier(CosubStep, ImageClassifier):
    """Image classifier whose training step co-trains k submodels.

    In ``loss()`` the (already Mixup/CutMix-augmented) batch is repeated k
    times along the batch dimension and goes once through backbone, neck and
    head; the per-sample stochastic depth of the backbone makes each copy a
    different random submodel. The k logits are split and scored with
    :class:`~cosub_mm.models.CosubLoss`. ``predict()`` and
    ``extract_feat()`` are the parent's: the full network at test time.
    The per-block drop rates are the backbone's; the authors' uniform rule
    (every block drops with the same rate) is set, for cosub and baseline
    configs alike, by ``dict(type='cosub_mm.DropPathRateHook',
    rule='uniform')`` in ``custom_hooks``.

    Args:
        cosub_loss (dict): Config of the cosub loss. Defaults to
            ``dict(type='cosub_mm.CosubLoss')`` (λ = 0.5, BCE, k = 2).
        efficient_drop_path (bool): Compute each residual branch only on
            the samples that keep it (the paper's implementation; see
            :func:`~cosub_mm.models.drop_path.enable_efficient_drop_path`)
            instead of masking it. Same function, less compute. Supported
            for ViT, DeiT III, Swin, ConvNeXt and PiT. Defaults to False.
        share_copies (bool): With ``efficient_drop_path``, also compute a
            branch once for an image whose k copies are still identical
            (same drop decisions so far) and all keep it, as the step's
            :class:`~cosub_mm.models.drop_path.SubmodelPlan` says: same
            function, less compute. The plan, and with it the sharing, is
            off, with a warning, while the backbone has dropout or masked
            drop paths outside the efficient blocks. Defaults to True.
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
        ...     cosub_loss=dict(type='cosub_mm.CosubLoss', lambda_=0.5),
        ...     efficient_drop_path=True)
        >>> custom_hooks = [dict(type='cosub_mm.DropPathRateHook',
        ...                      rule='uniform')]
    """

    def __init__(self,
                 *args,
                 cosub_loss: Optional[dict] = None,
                 efficient_drop_path: bool = False,
                 share_copies: bool = True,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.head is None:
            raise ValueError('CosubClassifier needs a head: cosub compares '
                             'the logits of two submodels')
        self.init_cosub(cosub_loss or dict(type='cosub_mm.CosubLoss'),
                        efficient_drop_path, share_copies)

    def loss(self, inputs: Tensor,
             data_samples: List[DataSample]) -> Dict[str, Tensor]:
        """Co-train k submodels on the batch.

        Args:
            inputs (Tensor): Batch-augmented images ``(N, C, H, W)``.
            data_samples (list[DataSample]): With ``gt_label`` or, after
                Mixup/CutMix, ``gt_score``.

        Returns:
            dict: ``loss_label`` and ``loss_distill`` (their sum is the
            loss), ``agreement``, the fraction of images whose k
            submodels predict the same class, and with a submodel plan its
            summary (:meth:`~cosub_mm.models.CosubStep.plan_log`).
        """
        logits = self.split(self.head(self.submodel_features(inputs)))
        if 'gt_score' in data_samples[0]:
            target = torch.stack([s.gt_score for s in data_samples])
        else:
            target = torch.cat([s.gt_label for s in data_samples])
        losses = self.cosub_loss.forward_all(logits, target)
        losses['agreement'] = self.agreement(logits)
        losses.update(self.plan_log())
        return losses
