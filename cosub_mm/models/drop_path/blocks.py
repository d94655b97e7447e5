"""Efficient stochastic depth for residual blocks, and the switch that
turns it on in a built backbone.

Each ``Efficient*`` class (a *twin*) subclasses a block, overrides
``forward`` and lists its branches (``branch_drop_paths``, for the step's
:class:`~cosub_mm.models.drop_path.SubmodelPlan`): every residual branch
goes through
:func:`~cosub_mm.models.drop_path.drop_path_add`, which computes it on the
samples that keep it (Touvron et al., *Co-training 2^L Submodels*, CVPR
2023). Parameters, buffers and ``state_dict`` keys are the parent's, so
:func:`enable_efficient_drop_path` converts a *built* backbone in place by
switching each block's class: no rebuild, no re-initialisation, checkpoints
load either way. Eval mode computes the parent's function.

The convertible block types live in one table, :data:`EFFICIENT_BLOCKS`
(original class -> twin and an optional check of its branches), filled with
:func:`register_efficient_block`: here for mmpretrain's ViT, DeiT III, Swin
and ConvNeXt blocks, in :mod:`cosub_mm.models.backbones.pit` for PiT and in
:mod:`.timm_blocks` for timm's ViT ``Block`` (when timm is installed).

Example:
    >>> backbone = MODELS.build(dict(type='mmpretrain.VisionTransformer',
    ...                              arch='b', drop_path_rate=0.2))
    >>> enable_efficient_drop_path(backbone)  # 12 blocks converted
    12
"""
import warnings
from typing import (Callable, Dict, List, NamedTuple, Optional, Set, Type,
                    TypeVar)

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

from .efficient import drop_path_add, drop_path_disabled
from .plan import block_plans
from .rates import drop_rate, is_drop_path

__all__ = [
    'EfficientTransformerEncoderLayer',
    'EfficientDeiT3TransformerEncoderLayer', 'EfficientSwinBlock',
    'EfficientConvNeXtBlock', 'EfficientBlock', 'EFFICIENT_BLOCKS',
    'register_efficient_block', 'is_efficient_block',
    'enable_efficient_drop_path', 'copy_sharing_blocker'
]


def _ffn_branch(ffn: nn.Module, x: Tensor) -> Tensor:
    """mmcv ``FFN`` / mmpretrain ``DeiT3FFN`` without identity and drop."""
    return ffn.gamma2(ffn.layers(x))


def _attn_branch(attn: nn.Module, x: Tensor, *args) -> Tensor:
    """An attention module whose last op is its drop path, without it."""
    drop = attn.out_drop if hasattr(attn, 'out_drop') else attn.drop
    with drop_path_disabled(drop):
        return attn(x, *args)


class _EfficientPreNormLayer:
    """The efficient forward shared by the ViT and DeiT III twins.

    Both layers are ``x + attn(ln1(x))`` then ``x + ffn(ln2(x))``, with the
    drop paths inside ``attn`` (``out_drop``) and ``ffn``
    (``dropout_layer``).
    """

    def branch_drop_paths(self) -> List[nn.Module]:
        """The drop-path modules of the branches, in forward order."""
        return [self.attn.out_drop, self.ffn.dropout_layer]

    def forward(self, x: Tensor) -> Tensor:
        attn, ffn = block_plans(self, 2)
        x = drop_path_add(x, lambda h: _attn_branch(self.attn, self.ln1(h)),
                          drop_rate(self.attn.out_drop), self.training,
                          plan=attn)
        x = drop_path_add(x, lambda h: _ffn_branch(self.ffn, self.ln2(h)),
                          drop_rate(self.ffn.dropout_layer), self.training,
                          plan=ffn)
        return x


class EfficientTransformerEncoderLayer(_EfficientPreNormLayer,
                                       TransformerEncoderLayer):
    """mmpretrain ViT layer with branches computed on kept samples only."""


class EfficientDeiT3TransformerEncoderLayer(_EfficientPreNormLayer,
                                            DeiT3TransformerEncoderLayer):
    """mmpretrain DeiT III layer with branches computed on kept samples.

    The FFN input is normalised with ``ln2`` as in DeiT III;
    :func:`cosub_mm.stack.deit3.fix_deit3_ffn_norm` makes mmpretrain's masked
    layer do the same, so both forms compute one function.
    """


class EfficientSwinBlock(SwinBlock):
    """mmpretrain Swin block with branches computed on kept samples.

    Window attention acts on each image separately, so selecting rows is
    exact.
    """

    def branch_drop_paths(self) -> List[nn.Module]:
        """The drop-path modules of the branches, in forward order."""
        return [self.attn.drop, self.ffn.dropout_layer]

    def forward(self, x: Tensor, hw_shape) -> Tensor:
        # taken before checkpointing: the replay in backward runs after the
        # plan, and must compute the same rows
        attn, ffn = block_plans(self, 2)

        def _inner_forward(x):
            x = drop_path_add(
                x, lambda h: _attn_branch(self.attn, self.norm1(h), hw_shape),
                drop_rate(self.attn.drop), self.training, plan=attn)
            x = drop_path_add(x,
                              lambda h: _ffn_branch(self.ffn, self.norm2(h)),
                              drop_rate(self.ffn.dropout_layer), self.training,
                              plan=ffn)
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

    def branch_drop_paths(self) -> List[nn.Module]:
        """The drop-path module of the branch."""
        return [self.drop_path]

    def forward(self, x: Tensor) -> Tensor:
        (plan, ) = block_plans(self, 1)  # before checkpointing (see Swin)

        def _inner_forward(x):
            return drop_path_add(x, self._branch, drop_rate(self.drop_path),
                                 self.training, plan=plan)

        if self.with_cp and x.requires_grad:
            return cp.checkpoint(_inner_forward, x, use_reentrant=False)
        return _inner_forward(x)


class EfficientBlock(NamedTuple):
    """An entry of :data:`EFFICIENT_BLOCKS`.

    Attributes:
        twin (type): The efficient subclass a block's class is switched to.
        check (callable, optional): ``check(block) -> bool``, whether the
            block's branches are the ones ``twin`` re-implements (e.g. not a
            custom FFN); None accepts every block of the type.
    """
    twin: Type[nn.Module]
    check: Optional[Callable[[nn.Module], bool]] = None


#: Original block class (exact type match) -> its :class:`EfficientBlock`.
EFFICIENT_BLOCKS: Dict[Type[nn.Module], EfficientBlock] = {}

_Twin = TypeVar('_Twin', bound=Type[nn.Module])


def register_efficient_block(
    block: Type[nn.Module],
    twin: Optional[_Twin] = None,
    check: Optional[Callable[[nn.Module], bool]] = None,
    force: bool = False,
) -> Callable[[_Twin], _Twin]:
    """Make :func:`enable_efficient_drop_path` convert ``block`` to ``twin``.

    Usable as a call or, without ``twin``, as a class decorator::

        @register_efficient_block(MyBlock)
        class EfficientMyBlock(MyBlock):
            def branch_drop_paths(self):  # the branches, forward order
                return [self.drop_path]

            def forward(self, x):
                (plan, ) = block_plans(self, 1)  # the cosub step's rows
                return drop_path_add(x, self.branch,
                                     self.drop_path.drop_prob, self.training,
                                     plan=plan)

    Args:
        block (type): The block class, matched exactly (a subclass may
            change the forward, so it is not converted).
        twin (type, optional): A subclass of ``block`` that overrides
            ``forward`` and adds ``branch_drop_paths()`` (conversion
            switches the class of a built block, so an ``__init__`` of its
            own would never run).
        check (callable, optional): See :class:`EfficientBlock`.
        force (bool): Replace an existing, different entry for ``block``.
            Defaults to False.

    Returns:
        ``twin``, or the decorator that registers it.

    Raises:
        TypeError: If ``twin`` is not a proper subclass of ``block`` or
            defines its own ``__init__``.
        ValueError: If ``block`` already has a different twin and ``force``
            is False.
    """
    if not (isinstance(block, type) and issubclass(block, nn.Module)):
        raise TypeError(f'register_efficient_block: block must be an '
                        f'nn.Module class, got {block!r}')

    def register(twin: _Twin) -> _Twin:
        if not (isinstance(twin, type) and issubclass(twin, block)
                and twin is not block):
            raise TypeError(
                f'register_efficient_block: the twin of {block.__name__} '
                f'must be a subclass of it, got {twin!r}')
        if not callable(getattr(twin, 'branch_drop_paths', None)):
            raise TypeError(
                f'register_efficient_block: {twin.__name__} has no '
                'branch_drop_paths(), the list of its branches\' drop-path '
                'modules in forward order that the submodel plan draws for')
        if twin.__init__ is not block.__init__:
            raise TypeError(
                f'register_efficient_block: {twin.__name__} defines '
                '__init__, which never runs: a built block is converted by '
                'switching its class, so the twin may only override forward')
        entry = EfficientBlock(twin, check)
        old = EFFICIENT_BLOCKS.get(block)
        if old is not None and old != entry and not force:
            raise ValueError(
                f'register_efficient_block: {block.__name__} already '
                f'converts to {old.twin.__name__}; pass force=True to '
                f'replace it by {twin.__name__}')
        EFFICIENT_BLOCKS[block] = entry
        return twin

    return register if twin is None else register(twin)


def _twins() -> Set[Type[nn.Module]]:
    return {entry.twin for entry in EFFICIENT_BLOCKS.values()}


def is_efficient_block(module: nn.Module) -> bool:
    """Whether ``module`` is a registered twin (an efficient block)."""
    return type(module) in _twins()


def _plain_transformer_branches(layer: nn.Module) -> bool:
    """The ViT / DeiT III layer has the FFN and attention the twin redoes."""
    return (isinstance(layer.ffn, (FFN, DeiT3FFN)) and layer.ffn.add_identity
            and isinstance(layer.attn, MultiheadAttention)
            and not layer.attn.v_shortcut)


def _plain_swin_ffn(block: nn.Module) -> bool:
    """The Swin block has the residual FFN the twin redoes."""
    return isinstance(block.ffn, FFN) and block.ffn.add_identity


register_efficient_block(TransformerEncoderLayer,
                         EfficientTransformerEncoderLayer,
                         check=_plain_transformer_branches)
register_efficient_block(DeiT3TransformerEncoderLayer,
                         EfficientDeiT3TransformerEncoderLayer,
                         check=_plain_transformer_branches)
register_efficient_block(SwinBlock, EfficientSwinBlock,
                         check=_plain_swin_ffn)
register_efficient_block(ConvNeXtBlock, EfficientConvNeXtBlock)


def enable_efficient_drop_path(model: nn.Module) -> int:
    """Compute residual branches only on kept samples, in place.

    Switches every block whose exact type is in :data:`EFFICIENT_BLOCKS`
    (and passes its check) to its twin. A registered block that fails its
    check keeps the masked forward, with a warning naming it.

    Args:
        model (nn.Module): A built backbone (or a whole classifier).

    Returns:
        int: The number of efficient blocks: converted now or already
        efficient (e.g. a PiT built with ``efficient_drop_path=True``).

    Raises:
        ValueError: If no block of ``model`` supports it.
    """
    twins = _twins()
    count = 0
    skipped: List[str] = []
    for name, module in model.named_modules():
        entry = EFFICIENT_BLOCKS.get(type(module))
        if entry is not None:
            if entry.check is not None and not entry.check(module):
                skipped.append(f'{name} ({type(module).__name__})')
                continue
            module.__class__ = entry.twin
            count += 1
        elif type(module) in twins:
            count += 1
    if skipped:
        warnings.warn(
            f'efficient_drop_path: {len(skipped)} block(s) of '
            f'{type(model).__name__} keep the masked drop path: their '
            'branches are not the ones the efficient twin re-implements: '
            + ', '.join(skipped))
    if count == 0:
        # package-qualified: timm's ViT block is plainly named ``Block``
        supported = ', '.join(f'{c.__module__.split(".")[0]}.{c.__name__}'
                              for c in EFFICIENT_BLOCKS)
        raise ValueError(
            f'efficient_drop_path: {type(model).__name__} has no block that '
            f'supports it (supported: {supported}; add others with '
            'register_efficient_block). Branches with BatchNorm (RegNet, '
            'XCiT) are not supported because their batch statistics would '
            'change.')
    return count


def copy_sharing_blocker(model: nn.Module) -> Optional[str]:
    """Why a cosub step may *not* follow a submodel plan, if so.

    A :class:`~cosub_mm.models.drop_path.SubmodelPlan` draws the drop
    decisions before the forward and derives from them which copies of an
    image are identical; that is exact only when every random choice of the
    forward is one of those decisions, and when no block replays its
    forward after the plan. This finds what breaks that.

    Args:
        model (nn.Module): The backbone (efficient blocks already enabled).

    Returns:
        str | None: The first blocker (a dropout with p > 0, a drop path
        with rate > 0 outside an efficient block, or a timm model with
        activation checkpointing), or None if sharing is exact.
    """
    inside = set()
    for module in model.modules():
        if is_efficient_block(module):
            inside.update(id(m) for m in module.modules())
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return f'{name} is a dropout with p={module.p}'
        attn_drop = getattr(module, 'attn_drop', None)
        if isinstance(attn_drop, float) and attn_drop > 0:
            return f'{name} applies attention dropout {attn_drop}'
        if (is_drop_path(module) and drop_rate(module) > 0
                and id(module) not in inside):
            return (f'{name} is a masked drop path outside the efficient '
                    'blocks')
        if getattr(module, 'grad_checkpointing', False) is True:
            # timm's set_grad_checkpointing replays a whole block in
            # backward, after the plan, where it would draw anew
            return (f'{name or type(module).__name__} uses activation '
                    'checkpointing (grad_checkpointing)')
    return None
