"""The key mapping between timm's ViT / DeiT III names and mmpretrain's.

One table, read in both directions, shared by ``deit_to_mmpretrain.py``
(timm names to ours) and ``mmpretrain_to_timm.py`` (ours to timm's):

============================  ==============================================
timm (``VisionTransformer``)  mmpretrain (``VisionTransformer``/``DeiT3``)
============================  ==============================================
``cls_token``                 ``backbone.cls_token``
``pos_embed``                 ``backbone.pos_embed``
``patch_embed.proj.*``        ``backbone.patch_embed.projection.*``
``norm_pre.*``                ``backbone.pre_norm.*``
``blocks.N.norm1.*``          ``backbone.layers.N.ln1.*``
``blocks.N.attn.qkv.*``       ``backbone.layers.N.attn.qkv.*``
``blocks.N.attn.proj.*``      ``backbone.layers.N.attn.proj.*``
``blocks.N.ls1.gamma``        ``backbone.layers.N.attn.gamma1.weight``
``blocks.N.norm2.*``          ``backbone.layers.N.ln2.*``
``blocks.N.mlp.fc1.*``        ``backbone.layers.N.ffn.layers.0.0.*``
``blocks.N.mlp.fc2.*``        ``backbone.layers.N.ffn.layers.1.*``
``blocks.N.ls2.gamma``        ``backbone.layers.N.ffn.gamma2.weight``
``norm.*``                    ``backbone.ln1.*`` (final norm)
``fc_norm.*``                 ``backbone.ln2.*`` (``out_type='avg_featmap'``)
``head.*``                    ``head.layers.head.*`` (or ``head.fc.*``)
============================  ==============================================

facebookresearch/deit (DeiT III and the cosub checkpoints) names LayerScale
``blocks.N.gamma_1`` / ``gamma_2``; timm >= 0.6 ``ls1.gamma`` / ``ls2.gamma``.
Both read; :func:`mmpretrain_to_timm` writes either. Values are never
changed.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch

__all__ = [
    'BLOCK_RULES', 'TOP_RULES', 'timm_key_to_mmpretrain',
    'mmpretrain_key_to_timm', 'timm_to_mmpretrain', 'mmpretrain_to_timm',
    'load_state_dict'
]

#: (timm name, mmpretrain name) inside block N, in the blocks' key order.
BLOCK_RULES: List[Tuple[str, str]] = [
    ('norm1.', 'ln1.'),
    ('attn.qkv.', 'attn.qkv.'),
    ('attn.proj.', 'attn.proj.'),
    ('gamma_1', 'attn.gamma1.weight'),  # facebookresearch/deit
    ('ls1.gamma', 'attn.gamma1.weight'),  # timm
    ('norm2.', 'ln2.'),
    ('mlp.fc1.', 'ffn.layers.0.0.'),
    ('mlp.fc2.', 'ffn.layers.1.'),
    ('gamma_2', 'ffn.gamma2.weight'),
    ('ls2.gamma', 'ffn.gamma2.weight'),
]
#: (timm name, mmpretrain name) outside the blocks; a trailing dot matches a
#: prefix, otherwise the whole key.
TOP_RULES: List[Tuple[str, str]] = [
    ('cls_token', 'backbone.cls_token'),
    ('pos_embed', 'backbone.pos_embed'),
    ('patch_embed.proj.', 'backbone.patch_embed.projection.'),
    ('norm_pre.', 'backbone.pre_norm.'),
    ('norm.', 'backbone.ln1.'),
    ('fc_norm.', 'backbone.ln2.'),
    ('head.', 'head.layers.head.'),
]
# mmpretrain's LinearClsHead: read (ours -> timm) only, timm -> ours writes
# VisionTransformerClsHead names.
_EXTRA_TOP_RULES: List[Tuple[str, str]] = [('head.', 'head.fc.')]
LAYER_SCALE_STYLES = ('timm', 'deit')

_BLOCK = re.compile(r'^blocks\.(\d+)\.(.+)$')
_LAYER = re.compile(r'^backbone\.layers\.(\d+)\.(.+)$')


def _match(key: str, rules: List[Tuple[str, str]]) -> Optional[str]:
    """Apply the first ``(src, dst)`` rule that matches ``key``."""
    for src, dst in rules:
        if key == src or (src.endswith('.') and key.startswith(src)):
            return dst + key[len(src):]
    return None


def timm_key_to_mmpretrain(key: str) -> str:
    """mmpretrain's name of a timm ViT / DeiT III key.

    Raises:
        KeyError: ``key`` is not a ViT / DeiT III parameter name.
    """
    match = _BLOCK.match(key)
    if match:
        index, rest = match.groups()
        new = _match(rest, BLOCK_RULES)
        if new is not None:
            return f'backbone.layers.{index}.{new}'
    else:
        new = _match(key, TOP_RULES)
        if new is not None:
            return new
    raise KeyError(key)


def mmpretrain_key_to_timm(key: str, layer_scale: str = 'timm') -> str:
    """timm's name of an mmpretrain ViT / DeiT III key.

    Args:
        key (str): A ``backbone.*`` or ``head.*`` key.
        layer_scale (str): ``'timm'`` (``ls1.gamma``) or ``'deit'``
            (``gamma_1``, facebookresearch/deit). Defaults to 'timm'.

    Raises:
        KeyError: ``key`` has no timm name.
    """
    if layer_scale not in LAYER_SCALE_STYLES:
        raise ValueError(f'layer_scale must be one of {LAYER_SCALE_STYLES}, '
                         f'got {layer_scale!r}')
    skip = 'ls' if layer_scale == 'deit' else 'gamma_'
    match = _LAYER.match(key)
    if match:
        index, rest = match.groups()
        new = _match(rest, [(mm, timm) for timm, mm in BLOCK_RULES
                            if not timm.startswith(skip)])
        if new is not None:
            return f'blocks.{index}.{new}'
    else:
        new = _match(key, [(mm, timm)
                           for timm, mm in TOP_RULES + _EXTRA_TOP_RULES])
        if new is not None:
            return new
    raise KeyError(key)


def _unknown(keys: List[str]) -> str:
    return f'{sorted(keys)[:8]}{" ..." if len(keys) > 8 else ""}'


def timm_to_mmpretrain(state_dict: Dict[str, torch.Tensor],
                       backbone_only: bool = False
                       ) -> 'OrderedDict[str, torch.Tensor]':
    """Map a timm-named ViT / DeiT III state dict to mmpretrain keys.

    Args:
        state_dict (dict): timm (or facebookresearch/deit) names.
        backbone_only (bool): Drop the head. Defaults to False.

    Returns:
        OrderedDict: ``backbone.*`` (and ``head.layers.head.*``) keys in the
        input's order, the input's tensor objects.

    Raises:
        ValueError: Keys that are not ViT / DeiT III keys, named.
    """
    unknown, out = [], OrderedDict()
    for key, value in state_dict.items():
        try:
            new_key = timm_key_to_mmpretrain(key)
        except KeyError:
            unknown.append(key)
            continue
        if backbone_only and not new_key.startswith('backbone.'):
            continue
        out[new_key] = value
    if unknown:
        raise ValueError('Not ViT / DeiT III keys (timm names expected): '
                         + _unknown(unknown))
    return out


def mmpretrain_to_timm(state_dict: Dict[str, torch.Tensor],
                       layer_scale: str = 'timm'
                       ) -> 'OrderedDict[str, torch.Tensor]':
    """Map mmpretrain ViT / DeiT III ``backbone.*`` / ``head.*`` keys to
    timm's.

    Args:
        state_dict (dict): mmpretrain names only (filter other keys first).
        layer_scale (str): See :func:`mmpretrain_key_to_timm`.

    Returns:
        OrderedDict: timm keys in the input's order, the input's tensors.

    Raises:
        ValueError: Keys without a timm name, named.
    """
    unknown, out = [], OrderedDict()
    for key, value in state_dict.items():
        try:
            out[mmpretrain_key_to_timm(key, layer_scale)] = value
        except KeyError:
            unknown.append(key)
    if unknown:
        raise ValueError('No timm name for these mmpretrain ViT / DeiT III '
                         'keys: ' + _unknown(unknown))
    return out


def load_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The model weights of a checkpoint, read weights-only.

    Accepts our training checkpoints and exported backbones
    (``state_dict``), official DeiT / cosub files (``model``,
    ``model_ema``) and plain state dicts. A file whose unpickling would run
    code raises :class:`cosub_mm.fileio.UnsafeCheckpointError`.
    """
    from cosub_mm.fileio import safe_load
    checkpoint = safe_load(path)
    if not isinstance(checkpoint, dict):
        raise ValueError(f'{path}: expected a dict, got {type(checkpoint)}')
    for field in ('model', 'state_dict', 'model_ema'):
        if isinstance(checkpoint.get(field), dict):
            return checkpoint[field]
    return checkpoint
