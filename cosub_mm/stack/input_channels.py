"""A pretrained patch embedding loaded into a model with other input channels.

mmcv's ``PatchEmbed`` (the input layer of mmpretrain's ViT, DeiT III and
Swin) has no rule for a checkpoint whose input channels differ from the
model's. Loading the demo's grayscale Fashion-MNIST backbone into an RGB
UperNet through ``init_cfg=dict(type='Pretrained', ...)`` logs::

    size mismatch for patch_embed.projection.weight: copying a param with
    shape torch.Size([96, 1, 7, 7]) from checkpoint, the shape in current
    model is torch.Size([96, 3, 7, 7]).

and leaves the input layer at its random init, i.e. the pretraining of the
layer everything else depends on is silently lost.
:func:`fix_patch_embed_input_channels` gives ``PatchEmbed`` a load-time
rule, as mmpretrain's ViT has for a ``pos_embed`` of another size:

* 1 → 3 channels: the gray kernel times the ITU-R 601 luma weights of the
  RGB channels. A convolution with these weights of an RGB image is exactly
  the gray convolution of its luma, so with per-channel normalisation by
  the gray statistics the RGB model starts as the gray model on the
  image's luma (and can then learn colour).
* 3 → 1 channel: the sum of the kernels (timm's ``adapt_input_conv``), the
  RGB model on a gray image replicated to three channels.

Other channel counts are left to mmengine's size-mismatch report. The rule
assumes RGB channel order inside the model (``bgr_to_rgb=True`` in the data
preprocessor, as mmseg's and mmpretrain's configs have).
"""
import functools
from typing import Any, Callable, Sequence

import torch
from mmengine.logging import print_log

__all__ = ['fix_patch_embed_input_channels', 'adapt_input_channels', 'LUMA']

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, RGB order


def adapt_input_channels(weight: torch.Tensor, in_channels: int,
                         luma: Sequence[float] = LUMA) -> torch.Tensor:
    """A convolution kernel ``(O, I, ...)`` adapted to ``in_channels``.

    Args:
        weight (torch.Tensor): The checkpoint's kernel.
        in_channels (int): The model's input channels.
        luma (Sequence[float]): RGB weights of the gray value (1 → 3).

    Returns:
        torch.Tensor: The kernel with ``in_channels`` input channels.

    Raises:
        ValueError: For a pair of channel counts other than 1 ↔ 3.
    """
    source = weight.shape[1]
    if source == in_channels:
        return weight
    if (source, in_channels) == (1, 3):
        scale = torch.tensor(luma, dtype=weight.dtype, device=weight.device)
        return weight * scale.view(1, 3, *[1] * (weight.dim() - 2))
    if (source, in_channels) == (3, 1):
        return weight.sum(dim=1, keepdim=True)
    raise ValueError(f'no rule to adapt {source} input channels to '
                     f'{in_channels} (only 1 <-> 3)')


def _adapt_on_load(module: Any, state_dict: dict, prefix: str,
                   *args: Any, **kwargs: Any) -> None:
    """``PatchEmbed`` load pre-hook: adapt the checkpoint's input kernel."""
    key = prefix + 'projection.weight'
    weight = state_dict.get(key)
    target = module.projection.weight
    if weight is None or weight.dim() != target.dim():
        return
    source, wanted = weight.shape[1], target.shape[1]
    if source == wanted or {source, wanted} != {1, 3} or \
            weight.shape[0] != target.shape[0]:
        return
    state_dict[key] = adapt_input_channels(weight, wanted)
    rule = 'luma weights' if wanted == 3 else 'sum of the RGB kernels'
    print_log(f'{key}: adapted the checkpoint\'s {source} input channel(s) '
              f'to {wanted} ({rule})', logger='current')


def _with_hook(original: Callable) -> Callable:

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._register_load_state_dict_pre_hook(_adapt_on_load,
                                                with_module=True)

    __init__._cosub_mm_fix = True  # type: ignore[attr-defined]
    return __init__


def fix_patch_embed_input_channels() -> bool:
    """Adapt a 1- or 3-channel checkpoint's patch embedding on load.

    Patches mmcv's and mmpretrain's ``PatchEmbed`` so that every instance
    made afterwards adapts ``projection.weight`` of a checkpoint with 1
    input channel to a 3-channel model and back (see the module docstring).
    A checkpoint with the model's own channels loads as before.

    Returns:
        bool: Whether the fix was applied.
    """
    from mmcv.cnn.bricks.transformer import PatchEmbed as MMCVPatchEmbed
    from mmpretrain.models.utils.embed import \
        PatchEmbed as MMPretrainPatchEmbed
    applied = False
    for cls in (MMCVPatchEmbed, MMPretrainPatchEmbed):
        if not getattr(cls.__init__, '_cosub_mm_fix', False):
            cls.__init__ = _with_hook(cls.__init__)
            applied = True
    return applied
