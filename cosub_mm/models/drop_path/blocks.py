"""Efficient stochastic depth for mmpretrain's ViT, DeiT III, Swin and
ConvNeXt blocks, and the switch that turns it on in a built backbone.

Each ``Efficient*`` class subclasses an mmpretrain block and only overrides
``forward``: every residual branch goes through
:func:`~cosub_mm.models.utils.drop_path_add`, which computes it on the
samples that keep it (Touvron et al., *Co-training 2^L Submodels*, CVPR
2023). Parameters, buffers and ``state_dict`` keys are the parent's, so
:func:`enable_efficient_drop_path` converts a *built* backbone in place by
switching each block's class: no rebuild, no re-initialisation, checkpoints
load either way. Eval mode runs the parent's forward unchanged.

Example:
    >>> backbone = MODELS.build(dict(type='mmpretrain.VisionTransformer',
    ...                              arch='b', drop_path_rate=0.2))
    >>> enable_efficient_drop_path(backbone)  # 12 blocks converted
"""
from typing import Dict, Optional, Sequence, Type

import torch.utils.checkpoint as cp
from mmcv.cnn.bricks.transformer import FFN
from mmpretrain.models.backbones.convnext import ConvNeXtBlock
from mmpretrain.models.backbones.deit3 import (DeiT3FFN,
                                               DeiT3TransformerEncoderLayer)
from mmpretrain.models.backbones.swin_transformer import SwinBlock
from mmpretrain.models.backbones.vision_transformer import \
    TransformerEncoderLayer
from mmpretrain.models.utils import MultiheadAttention
from torch import Tensor, nn

from cosub_mm.models.utils import drop_path_add, drop_path_disabled
from cosub_mm.models.utils.drop_path import _is_drop_path

__all__ = [
    'EfficientTransformerEncoderLayer',
    'EfficientDeiT3TransformerEncoderLayer',
    'EfficientSwinBlock', 'EfficientConvNeXtBlock',
    'enable_efficient_drop_path', 'copy_sharing_blocker'
]


def _rate(module: nn.Module) -> float:
    """Drop rate of a DropPath module (0 for the nn.Identity stand-in)."""
    return float(getattr(module, 'drop_prob', 0.0))


def _ffn_branch(ffn: nn.Module, x: Tensor) -> Tensor:
    """mmcv ``FFN`` / mmpretrain ``DeiT3FFN`` without identity and drop."""
    return ffn.gamma2(ffn.layers(x))


def _attn_branch(attn: nn.Module, x: Tensor, *args) -> Tensor:
    """An attention module whose last op is its drop path, without it."""
    drop = attn.out_drop if hasattr(attn, 'out_drop') else attn.drop
    with drop_path_disabled(drop):
        return attn(x, *args)


class EfficientTransformerEncoderLayer(TransformerEncoderLayer):
    """mmpretrain ViT layer with branches computed on kept samples only."""

    def forward(self, x: Tensor) -> Tensor:
        x = drop_path_add(x, lambda h: _attn_branch(self.attn, self.ln1(h)),
                          _rate(self.attn.out_drop), self.training)
        x = drop_path_add(x, lambda h: _ffn_branch(self.ffn, self.ln2(h)),
                          _rate(self.ffn.dropout_layer), self.training)
        return x


class EfficientDeiT3TransformerEncoderLayer(DeiT3TransformerEncoderLayer):
    """mmpretrain DeiT III layer with branches computed on kept samples.

    The FFN input is normalised with ``ln2`` as in DeiT III;
    :func:`cosub_mm.compat.fix_deit3_ffn_norm` makes mmpretrain's masked
    layer do the same, so both forms compute one function.
    """

    def forward(self, x: Tensor) -> Tensor:
        x = drop_path_add(x, lambda h: _attn_branch(self.attn, self.ln1(h)),
                          _rate(self.attn.out_drop), self.training)
        x = drop_path_add(x, lambda h: _ffn_branch(self.ffn, self.ln2(h)),
                          _rate(self.ffn.dropout_layer), self.training)
        return x


class EfficientSwinBlock(SwinBlock):
    """mmpretrain Swin block with branches computed on kept samples.

    Window attention acts on each image separately, so selecting rows is
    exact.
    """

    def forward(self, x: Tensor, hw_shape) -> Tensor:

        # a checkpointed block replays its forward outside the cosub
        # context, so it must compute the same rows both times
        share = not self.with_cp

        def _inner_forward(x):
            x = drop_path_add(
                x, lambda h: _attn_branch(self.attn, self.norm1(h), hw_shape),
                _rate(self.attn.drop), self.training, share)
            x = drop_path_add(x,
                              lambda h: _ffn_branch(self.ffn, self.norm2(h)),
                              _rate(self.ffn.dropout_layer), self.training,
                              share)
            return x

        if self.with_cp and x.requires_grad:
            return cp.checkpoint(_inner_forward, x, use_reentrant=False)
        return _inner_forward(x)


class EfficientConvNeXtBlock(ConvNeXtBlock):
    """mmpretrain ConvNeXt block with its branch computed on kept samples.

    Its LayerNorm and GRN normalise each image separately, so selecting rows
    is exact.
    """

    def _branch(self, x: Tensor) -> Tensor:
        x = self.depthwise_conv(x)
        if self.linear_pw_conv:
            x = x.permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
            x = self.norm(x, data_format='channel_last')
            x = self.act(self.pointwise_conv1(x))
            if self.grn is not None:
                x = self.grn(x, data_format='channel_last')
            x = self.pointwise_conv2(x).permute(0, 3, 1, 2)
        else:
            x = self.norm(x, data_format='channel_first')
            x = self.act(self.pointwise_conv1(x))
            if self.grn is not None:
                x = self.grn(x, data_format='channel_first')
            x = self.pointwise_conv2(x)
        if self.gamma is not None:
            x = x.mul(self.gamma.view(1, -1, 1, 1))
        return x

    def forward(self, x: Tensor) -> Tensor:

        def _inner_forward(x):
            return drop_path_add(x, self._branch, _rate(self.drop_path),
                                 self.training, not self.with_cp)

        if self.with_cp and x.requires_grad:
            return cp.checkpoint(_inner_forward, x, use_reentrant=False)
        return _inner_forward(x)


#: mmpretrain block class -> its efficient twin (exact type match).
EFFICIENT_BLOCKS: Dict[Type[nn.Module], Type[nn.Module]] = {
    TransformerEncoderLayer: EfficientTransformerEncoderLayer,
    DeiT3TransformerEncoderLayer: EfficientDeiT3TransformerEncoderLayer,
    SwinBlock: EfficientSwinBlock,
    ConvNeXtBlock: EfficientConvNeXtBlock,
}


def _convertible(module: nn.Module) -> bool:
    """Whether the branches are the plain ones the twins re-implement."""
    if isinstance(module, (TransformerEncoderLayer,
                           DeiT3TransformerEncoderLayer)):
        return (isinstance(module.ffn, (FFN, DeiT3FFN))
                and module.ffn.add_identity
                and isinstance(module.attn, MultiheadAttention)
                and not module.attn.v_shortcut)
    if isinstance(module, SwinBlock):
        return isinstance(module.ffn, FFN) and module.ffn.add_identity
    return True


def enable_efficient_drop_path(model: nn.Module) -> int:
    """Compute residual branches only on kept samples, in place.

    Converts every supported mmpretrain block (:data:`EFFICIENT_BLOCKS`) and
    sets ``efficient_drop_path = True`` on cosub_mm's own blocks (PiT) that
    carry that attribute.

    Args:
        model (nn.Module): A built backbone (or a whole classifier).

    Returns:
        int: The number of blocks converted.

    Raises:
        ValueError: If no block of ``model`` supports it.
    """
    count = 0
    for module in model.modules():
        twin = EFFICIENT_BLOCKS.get(type(module))
        if twin is not None and _convertible(module):
            module.__class__ = twin
            count += 1
        elif hasattr(module, 'efficient_drop_path'):
            module.efficient_drop_path = True
            count += 1
    if count == 0:
        supported: Sequence[str] = [c.__name__ for c in EFFICIENT_BLOCKS]
        raise ValueError(
            f'efficient_drop_path: {type(model).__name__} has no block that '
            f'supports it (supported: {", ".join(supported)} and cosub_mm '
            'PiT). Branches with BatchNorm (RegNet, XCiT) are not supported '
            'because their batch statistics would change.')
    return count


def _is_efficient(module: nn.Module) -> bool:
    return type(module) in EFFICIENT_BLOCKS.values() or getattr(
        module, 'efficient_drop_path', False) is True


def copy_sharing_blocker(model: nn.Module) -> Optional[str]:
    """Why the stacked copies of an image may *not* share branches, if so.

    :func:`~cosub_mm.models.utils.shared_copies` is exact only when every
    random choice of the forward is a drop decision of
    :func:`~cosub_mm.models.utils.drop_path_add`: two copies that are equal
    must stay equal through anything else. This finds what breaks that.

    Args:
        model (nn.Module): The backbone (efficient blocks already enabled).

    Returns:
        str | None: The first blocker (a dropout with p > 0, or a drop path
        with rate > 0 outside an efficient block), or None if sharing is
        exact.
    """
    inside = set()
    for module in model.modules():
        if _is_efficient(module):
            inside.update(id(m) for m in module.modules())
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return f'{name} is a dropout with p={module.p}'
        attn_drop = getattr(module, 'attn_drop', None)
        if isinstance(attn_drop, float) and attn_drop > 0:
            return f'{name} applies attention dropout {attn_drop}'
        if (_is_drop_path(module) and _rate(module) > 0
                and id(module) not in inside):
            return (f'{name} is a masked drop path outside the efficient '
                    'blocks')
    return None
