"""The efficient twin of timm's ViT ``Block``, for cosub with timm backbones.

timm's ``Block`` (``timm.models.vision_transformer``, used by its ViT, DeiT
and DeiT III models) is ``x + drop_path1(ls1(attn(norm1(x))))`` then
``x + drop_path2(ls2(mlp(norm2(x))))``. :class:`EfficientTimmBlock` computes
both branches only on the samples that keep them
(:func:`~cosub_mm.models.drop_path.drop_path_add`), drawing the keep mask
as timm's ``DropPath`` does
(:func:`~cosub_mm.models.drop_path.timm_keep_mask`), so a seeded step draws
the same submodels as timm's masked block. Importing this module registers
it in :data:`~cosub_mm.models.drop_path.EFFICIENT_BLOCKS`;
``cosub_mm.models.drop_path`` does that when timm is installed
(``pip install cosub_mm[timm]``).

Example (a timm DeiT III inside mmpretrain's ``TIMMBackbone``)::

    model = dict(
        type='cosub_mm.CosubClassifier',
        backbone=dict(type='mmpretrain.TIMMBackbone',
                      model_name='deit3_small_patch16_224', pretrained=False,
                      drop_path_rate=0.05),
        neck=dict(type='cosub_mm.TokenPooling'),  # the class token
        head=dict(type='VisionTransformerClsHead', num_classes=1000,
                  in_channels=384),
        efficient_drop_path=True)  # timm's Blocks become EfficientTimmBlock
    custom_hooks = [dict(type='cosub_mm.DropPathRateHook', rule='uniform')]
"""
from typing import List, Optional

from timm.models.vision_transformer import Block
from torch import Tensor, nn

from .blocks import register_efficient_block
from .efficient import drop_path_add, keep_mask_of
from .plan import block_plans
from .rates import drop_rate, is_drop_path

__all__ = ['EfficientTimmBlock']


class EfficientTimmBlock(Block):
    """timm ViT block with branches computed on kept samples only (the
    implementation of Touvron et al., *Co-training 2^L Submodels*, CVPR
    2023).

    Attention, LayerScale, MLP and LayerNorm act on each image separately,
    so selecting rows is exact. Eval mode computes the parent's function.
    """

    def forward(self, x: Tensor, attn_mask: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        attn, mlp = block_plans(self, 2)
        if attn_mask is not None or any(kwargs.values()):
            if attn is not None:
                raise RuntimeError(
                    'EfficientTimmBlock: an attention mask in a planned cosub '
                    'step (a mask may hold one row per sample, which row '
                    'selection would misalign); train with '
                    'efficient_drop_path=False')
            return super().forward(x, attn_mask=attn_mask, **kwargs)
        x = drop_path_add(x, lambda h: self.ls1(self.attn(self.norm1(h))),
                          drop_rate(self.drop_path1), self.training,
                          keep_mask=keep_mask_of(self.drop_path1), plan=attn)
        x = drop_path_add(x, lambda h: self.ls2(self.mlp(self.norm2(h))),
                          drop_rate(self.drop_path2), self.training,
                          keep_mask=keep_mask_of(self.drop_path2), plan=mlp)
        return x

    def branch_drop_paths(self) -> List[nn.Module]:
        """The drop-path modules of the branches, in forward order."""
        return [self.drop_path1, self.drop_path2]


def _plain_timm_block(block: nn.Module) -> bool:
    """The twin redoes the block: drop paths that scale by ``1/keep`` (or
    placeholders) and no BatchNorm, whose statistics rows would change."""
    drops = (block.drop_path1, block.drop_path2)
    return (all(
        (is_drop_path(d) and getattr(d, 'scale_by_keep', True))
        or type(d) is nn.Identity for d in drops) and not any(
            isinstance(m, nn.modules.batchnorm._BatchNorm)
            for m in block.modules()))


register_efficient_block(Block, EfficientTimmBlock, check=_plain_timm_block)
