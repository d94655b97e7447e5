"""Convert official DeiT III / cosub checkpoints (timm names) to mmpretrain.

The facebookresearch/deit repository (``models_v2.py``, DeiT III and the
cosub checkpoints) names parameters as timm does: ``blocks.N.attn.qkv``,
``blocks.N.gamma_1``, ``cls_token``, ``pos_embed`` (patch tokens only),
``patch_embed.proj``, ``norm``, ``head``. mmpretrain's ``DeiT3`` backbone
with ``VisionTransformerClsHead`` uses ``layers.N.attn.qkv``,
``layers.N.attn.gamma1.weight``, ``patch_embed.projection``, ``ln1`` and
``head.layers.head``. The mapping is one to one; values are not changed.

The source is read with weights-only unpickling (cosub_mm.fileio.safe_load):
a file whose pickle would run code is refused.

Usage:
    python tools/model_converters/deit_to_mmpretrain.py SRC DST
        [--backbone-only]

``--backbone-only`` drops the classification head (keys ``backbone.*``
only), for ``init_cfg=dict(type='Pretrained', prefix='backbone.')``.
"""
import argparse
import os
import os.path as osp
import re
import sys
from collections import OrderedDict
from typing import Dict, List, Tuple

import torch

sys.path.insert(
    0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
from cosub_mm.fileio import safe_load  # noqa: E402

__all__ = ['convert_deit3', 'convert_mmpretrain_to_deit3']

# (timm pattern, mmpretrain pattern); N is a block index.
_BLOCK_RULES: List[Tuple[str, str]] = [
    ('norm1.', 'ln1.'),
    ('attn.qkv.', 'attn.qkv.'),
    ('attn.proj.', 'attn.proj.'),
    ('gamma_1', 'attn.gamma1.weight'),
    ('ls1.gamma', 'attn.gamma1.weight'),  # newer timm
    ('norm2.', 'ln2.'),
    ('mlp.fc1.', 'ffn.layers.0.0.'),
    ('mlp.fc2.', 'ffn.layers.1.'),
    ('gamma_2', 'ffn.gamma2.weight'),
    ('ls2.gamma', 'ffn.gamma2.weight'),  # newer timm
]
_TOP_RULES: List[Tuple[str, str]] = [
    ('cls_token', 'backbone.cls_token'),
    ('pos_embed', 'backbone.pos_embed'),
    ('patch_embed.proj.', 'backbone.patch_embed.projection.'),
    ('norm.', 'backbone.ln1.'),
    ('head.', 'head.layers.head.'),
]
_BLOCK = re.compile(r'^blocks\.(\d+)\.(.+)$')
_LAYER = re.compile(r'^backbone\.layers\.(\d+)\.(.+)$')


def _map_one(key: str) -> str:
    match = _BLOCK.match(key)
    if match:
        index, rest = match.groups()
        for src, dst in _BLOCK_RULES:
            if rest.startswith(src):
                return f'backbone.layers.{index}.{dst}{rest[len(src):]}'
    else:
        for src, dst in _TOP_RULES:
            if key == src or (src.endswith('.') and key.startswith(src)):
                return dst + key[len(src):]
    raise KeyError(key)


def convert_deit3(state_dict: Dict[str, torch.Tensor],
                  backbone_only: bool = False
                  ) -> 'OrderedDict[str, torch.Tensor]':
    """Map a timm-named DeiT III / cosub state dict to mmpretrain keys.

    Args:
        state_dict (dict): The official model's state dict.
        backbone_only (bool): Drop the head. Defaults to False.

    Returns:
        OrderedDict: ``backbone.*`` (and ``head.layers.head.*``) tensors,
        the same objects as the input's.

    Raises:
        ValueError: Keys that are not DeiT III keys (e.g. a DeiT v1
            ``dist_token``), or a DeiT v1 checkpoint without LayerScale.
    """
    unknown, out = [], OrderedDict()
    for key, value in state_dict.items():
        try:
            new_key = _map_one(key)
        except KeyError:
            unknown.append(key)
            continue
        if backbone_only and not new_key.startswith('backbone.'):
            continue
        out[new_key] = value
    if unknown:
        raise ValueError(
            'Not DeiT III / cosub keys (timm names expected): '
            f'{sorted(unknown)[:8]}{" ..." if len(unknown) > 8 else ""}')
    if not any('gamma' in k for k in out):
        raise ValueError(
            'No LayerScale (gamma_1/gamma_2) found: this is not a DeiT III '
            'checkpoint; mmpretrain.DeiT3 expects LayerScale. Convert DeiT '
            'v1 checkpoints for mmpretrain.VisionTransformer instead.')
    return out


def convert_mmpretrain_to_deit3(
        state_dict: Dict[str, torch.Tensor]
) -> 'OrderedDict[str, torch.Tensor]':
    """The inverse of :func:`convert_deit3` (old-style ``gamma_1`` names)."""
    inverse_top = [(dst, src) for src, dst in _TOP_RULES]
    inverse_block = [(dst, src) for src, dst in _BLOCK_RULES
                     if not src.startswith('ls')]
    out = OrderedDict()
    for key, value in state_dict.items():
        match = _LAYER.match(key)
        new_key = None
        if match:
            index, rest = match.groups()
            for src, dst in inverse_block:
                if rest.startswith(src):
                    new_key = f'blocks.{index}.{dst}{rest[len(src):]}'
                    break
        else:
            for src, dst in inverse_top:
                if key == src or (src.endswith('.') and key.startswith(src)):
                    new_key = dst + key[len(src):]
                    break
        if new_key is None:
            raise ValueError(f'Not an mmpretrain DeiT3 key: {key}')
        out[new_key] = value
    return out


def load_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """Read the model weights of an official checkpoint, weights-only."""
    checkpoint = safe_load(path)
    for field in ('model', 'state_dict', 'model_ema'):
        if isinstance(checkpoint, dict) and field in checkpoint:
            return checkpoint[field]
    if not isinstance(checkpoint, dict):
        raise ValueError(f'{path}: expected a dict, got {type(checkpoint)}')
    return checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(
        description='Convert official DeiT III / cosub checkpoints (timm '
        'names) to mmpretrain DeiT3 keys')
    parser.add_argument('src', help='official checkpoint (.pth)')
    parser.add_argument('dst', help='converted checkpoint to write')
    parser.add_argument(
        '--backbone-only', action='store_true',
        help='keep backbone.* keys only (no classification head)')
    args = parser.parse_args()
    state_dict = convert_deit3(load_state_dict(args.src), args.backbone_only)
    if osp.dirname(args.dst):
        os.makedirs(osp.dirname(args.dst), exist_ok=True)
    torch.save({'state_dict': state_dict,
                'meta': {'converted_from': osp.basename(args.src)}},
               args.dst)
    print(f'wrote {len(state_dict)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
