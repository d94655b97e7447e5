"""Convert official DeiT III / cosub checkpoints (timm names) to mmpretrain.

The facebookresearch/deit repository (``models_v2.py``, DeiT III and the
cosub checkpoints) names parameters as timm does: ``blocks.N.attn.qkv``,
``blocks.N.gamma_1``, ``cls_token``, ``pos_embed`` (patch tokens only),
``patch_embed.proj``, ``norm``, ``head``. mmpretrain's ``DeiT3`` backbone
with ``VisionTransformerClsHead`` uses ``layers.N.attn.qkv``,
``layers.N.attn.gamma1.weight``, ``patch_embed.projection``, ``ln1`` and
``head.layers.head``. The mapping is one to one; values are not changed.

The source is read with weights-only unpickling (cosub_mm.fileio.safe_load):
a file whose pickle would run code is refused. The key mapping is shared
with its inverse, ``mmpretrain_to_timm.py``, in ``vit_keys.py``.

Usage:
    python tools/model_converters/deit_to_mmpretrain.py SRC DST
        [--backbone-only]

``--backbone-only`` drops the classification head (keys ``backbone.*``
only), for ``init_cfg=dict(type='Pretrained', prefix='backbone.')``.
"""
import argparse
import os
import os.path as osp
import sys
from collections import OrderedDict
from typing import Dict

import torch

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(osp.dirname(HERE)))  # cosub_mm of this clone
sys.path.insert(0, HERE)
from vit_keys import (load_state_dict, mmpretrain_to_timm,  # noqa: E402
                      timm_to_mmpretrain)

__all__ = ['convert_deit3', 'convert_mmpretrain_to_deit3', 'load_state_dict']


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
    out = timm_to_mmpretrain(state_dict, backbone_only)
    if not any('gamma' in k for k in out):
        raise ValueError(
            'No LayerScale (gamma_1/gamma_2) found: this is not a DeiT III '
            'checkpoint; mmpretrain.DeiT3 expects LayerScale. Convert DeiT '
            'v1 checkpoints for mmpretrain.VisionTransformer instead.')
    return out


def convert_mmpretrain_to_deit3(
        state_dict: Dict[str, torch.Tensor]
) -> 'OrderedDict[str, torch.Tensor]':
    """The inverse of :func:`convert_deit3` (old-style ``gamma_1`` names).

    For timm's current names use ``mmpretrain_to_timm.py``.
    """
    return mmpretrain_to_timm(state_dict, layer_scale='deit')


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
