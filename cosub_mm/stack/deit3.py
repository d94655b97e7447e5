"""mmpretrain's DeiT III made the authors' DeiT III: block and init.

Reference: facebookresearch/deit ``models_v2.py`` (``vit_models``,
``Layer_scale_init_Block``). Two fixes of mmpretrain 1.2.0's ``DeiT3``:

* :func:`fix_deit3_ffn_norm` (THIS CHANGES NUMERICS of every DeiT III
  block): the FFN input is normalised with ``ln2`` instead of ``ln1``, as in
  ``x = x + drop_path(gamma_1 * attn(norm1(x)))`` then
  ``x = x + drop_path(gamma_2 * mlp(norm2(x)))``.
* :func:`fix_deit3_authors_init` with the initializer
  :class:`DeiT3AuthorsInit`: the authors' init of the FFN Linears and the
  class token. It changes no numerics by itself: only models whose
  ``init_cfg`` lists ``dict(type='cosub_mm.DeiT3AuthorsInit')`` are
  initialised differently, so other mmpretrain users of ``DeiT3`` keep
  mmpretrain's init. (An unconditional patch would change it for every
  process that imports cosub_mm, e.g. through ``custom_imports``.)

Why an init type and a patch together: ``models_v2.py`` initialises every
Linear with trunc-normal(0.02), bias 0, and ``cls_token`` with
trunc-normal(0.02). A config's ``dict(type='TruncNormal', layer='Linear')``
reaches the FFN Linears, but mmengine runs a module's ``init_cfg`` before its
children's ``init_weights``, and mmpretrain's
``DeiT3TransformerEncoderLayer.init_weights`` then re-initialises them with
Xavier-uniform (bias normal(1e-6)); ``DeiT3`` never initialises
``cls_token`` (it stays zero). No ``init_cfg`` can run after that, so
:class:`DeiT3AuthorsInit` marks the layers it reaches and the patched
``init_weights`` re-applies trunc-normal to marked layers after mmpretrain's
Xavier. In a DeiT III config, next to the other ``models_v2.py`` inits::

    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
        dict(type='Constant', layer='LayerScale', val=1e-4),
        dict(type='cosub_mm.DeiT3AuthorsInit'),  # FFN Linears, cls_token
    ]
"""
import functools
import inspect
import warnings
from typing import Any, Callable

import torch
# mmengine.model imports neither torchvision nor mmcv: safe before the
# import fixes of .imports have run
from mmengine.model.weight_init import (BaseInit, trunc_normal_,
                                        trunc_normal_init, update_init_info)
from torch import nn

from cosub_mm.registry import WEIGHT_INITIALIZERS

__all__ = ['fix_deit3_ffn_norm', 'fix_deit3_authors_init', 'DeiT3AuthorsInit']

# Set on a DeiT3TransformerEncoderLayer by DeiT3AuthorsInit: the std its FFN
# Linears get after mmpretrain's Xavier re-initialisation.
_FFN_STD = '_cosub_mm_ffn_trunc_normal_std'


def _deit3_layer_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    x = x + self.attn(self.ln1(x))
    return self.ffn(self.ln2(x), identity=x)


def fix_deit3_ffn_norm() -> bool:
    """Normalise the FFN input of mmpretrain's DeiT III blocks with ``ln2``.

    This CHANGES NUMERICS of mmpretrain 1.2.0's DeiT III: every
    ``DeiT3TransformerEncoderLayer`` then normalises its FFN input with
    ``ln2`` instead of ``ln1``, so features, losses and trained weights
    differ from unpatched mmpretrain 1.2.0. It matches the reference DeiT III
    block, facebookresearch/deit ``models_v2.py`` ``Layer_scale_init_Block``:
    ``x + drop_path(gamma_2 * mlp(norm2(x)))``.

    mmpretrain 1.2.0's ``DeiT3TransformerEncoderLayer.forward`` computes
    ``self.ffn(self.ln1(x), identity=x)``: ``ln2`` is built but never used, so
    the block is not DeiT III's (official DeiT III / cosub checkpoints
    converted to mmpretrain give wrong features) and DDP fails with
    ``RuntimeError: Expected to have finished reduction in the prior
    iteration before starting a new one`` (``ln2`` gets no gradient) unless
    ``find_unused_parameters=True``.

    Does nothing when mmpretrain's forward already uses ``ln2``.

    Returns:
        bool: Whether the fix was applied.
    """
    from mmpretrain.models.backbones.deit3 import \
        DeiT3TransformerEncoderLayer as Layer
    if Layer.forward is _deit3_layer_forward:
        return False
    if 'self.ffn(self.ln1(x)' not in inspect.getsource(Layer.forward):
        return False
    Layer.forward = _deit3_layer_forward
    return True


def _trunc_normal_ffn(layer: nn.Module, std: float) -> None:
    """``models_v2.py`` ``_init_weights`` on the FFN Linears of ``layer``."""
    for m in layer.ffn.modules():
        if isinstance(m, nn.Linear):
            trunc_normal_init(m, std=std, bias=0.)


def _authors_init_weights(original: Callable) -> Callable:
    """``init_weights`` that re-applies trunc-normal to marked layers."""

    @functools.wraps(original)
    def init_weights(self: Any) -> None:
        original(self)
        std = getattr(self, _FFN_STD, None)
        if std is not None:
            _trunc_normal_ffn(self, std)

    init_weights._cosub_mm_fix = True  # type: ignore[attr-defined]
    return init_weights


def fix_deit3_authors_init() -> bool:
    """Let :class:`DeiT3AuthorsInit` survive mmpretrain's FFN re-init.

    Changes no numerics by itself: the patched ``init_weights`` of
    ``DeiT3TransformerEncoderLayer`` still runs mmpretrain's code
    (Xavier-uniform FFN Linears, bias normal(1e-6)) and, only for the layers
    that :class:`DeiT3AuthorsInit` marked, re-initialises the FFN Linears
    with trunc-normal afterwards (bias 0), as facebookresearch/deit
    ``models_v2.py`` ``vit_models._init_weights``. Without it a config's
    ``TruncNormal`` init of those Linears is silently overwritten (no
    error: the FFN starts at std ``sqrt(2 / (C + 4C))``, 0.032 for ViT-S,
    instead of 0.02).

    Does nothing when mmpretrain's ``init_weights`` no longer re-initialises
    the FFN with Xavier (then :class:`DeiT3AuthorsInit`'s own init stands).

    Returns:
        bool: Whether the fix was applied.
    """
    from mmpretrain.models.backbones.deit3 import \
        DeiT3TransformerEncoderLayer as Layer
    if getattr(Layer.init_weights, '_cosub_mm_fix', False):
        return False
    if 'xavier_uniform_' not in inspect.getsource(Layer.init_weights):
        return False
    Layer.init_weights = _authors_init_weights(Layer.init_weights)
    return True


@WEIGHT_INITIALIZERS.register_module()
class DeiT3AuthorsInit(BaseInit):
    """The authors' init of DeiT III's FFN Linears and class token.

    facebookresearch/deit ``models_v2.py`` ``vit_models``:
    ``trunc_normal_(self.cls_token, std=.02)`` and, for every Linear,
    ``trunc_normal_(m.weight, std=.02)``, bias 0. mmpretrain 1.2.0's
    ``DeiT3`` leaves ``cls_token`` at zero and re-initialises the FFN
    Linears with Xavier-uniform after any ``init_cfg``; this initializer
    does both the authors' way, in every mmpretrain ``DeiT3`` and
    ``DeiT3TransformerEncoderLayer`` of the module it is given (the module
    itself or below), and marks the layers so that
    :func:`fix_deit3_authors_init` redoes the FFN init after mmpretrain's.
    The rest of the authors' init (the other Linears, LayerNorm, LayerScale
    1e-4) is plain ``init_cfg`` (see the module docstring). Truncation is at
    ``[-2, 2]`` absolute, as timm's ``trunc_normal_`` that the authors use
    (at std 0.02, effectively untruncated).

    Args:
        std (float): Standard deviation of both inits. Defaults to 0.02
            (``models_v2.py``).

    Example:
        >>> model = dict(
        ...     type='ImageClassifier',
        ...     backbone=dict(type='DeiT3', arch='s'),
        ...     init_cfg=[dict(type='TruncNormal', layer='Linear', std=.02),
        ...               dict(type='cosub_mm.DeiT3AuthorsInit')])
    """

    def __init__(self, std: float = 0.02) -> None:
        super().__init__(bias=0)
        self.std = std

    def __call__(self, module: nn.Module) -> None:
        from mmpretrain.models.backbones.deit3 import (
            DeiT3, DeiT3TransformerEncoderLayer)
        layers = [m for m in module.modules()
                  if isinstance(m, DeiT3TransformerEncoderLayer)]
        backbones = [m for m in module.modules() if isinstance(m, DeiT3)]
        if not layers and not backbones:
            # a config that inherits a DeiT III recipe and swaps the
            # backbone keeps the model-level init_cfg: nothing to do there
            warnings.warn('DeiT3AuthorsInit: no mmpretrain DeiT3 or '
                          'DeiT3TransformerEncoderLayer in '
                          f'{type(module).__name__}; nothing initialised')
            return
        for layer in layers:
            setattr(layer, _FFN_STD, self.std)
            _trunc_normal_ffn(layer, self.std)
        for backbone in backbones:
            if backbone.cls_token is not None:
                trunc_normal_(backbone.cls_token, std=self.std)
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())

    def _get_init_info(self) -> str:
        return (f'{self.__class__.__name__}: FFN Linears and cls_token '
                f'trunc-normal, std={self.std}, bias=0')
