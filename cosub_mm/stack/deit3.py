"""mmpretrain's DeiT III block made DeiT III's: THIS CHANGES NUMERICS.

Unlike the other stack fixes, which change no result,
:func:`fix_deit3_ffn_norm` changes what mmpretrain 1.2.0's DeiT III computes:
the FFN input is normalised with ``ln2`` instead of ``ln1``. It matches the
authors' reference, facebookresearch/deit ``models_v2.py``,
``Layer_scale_init_Block``:
``x = x + drop_path(gamma_1 * attn(norm1(x)))`` then
``x = x + drop_path(gamma_2 * mlp(norm2(x)))``.
"""
import inspect
from typing import Any

import torch

__all__ = ['fix_deit3_ffn_norm']


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
