"""Export our ViT / DeiT III weights to timm's ``VisionTransformer``.

The inverse of ``deit_to_mmpretrain.py`` (the key table of both is
``vit_keys.py``): a training checkpoint of ``CosubClassifier`` /
``ImageClassifier`` (backbone and head), a backbone written by
``BackboneExportHook`` (``backbone.*`` only) or a segmentor's checkpoint
(``--backbone-only``) becomes a plain state dict with timm's names, which
loads with ``strict=True`` into the matching timm model. Values are not
changed. mmpretrain's ``DeiT3`` becomes timm's DeiT III
(``no_embed_class=True``, LayerScale ``init_values``), its
``VisionTransformer`` timm's ViT; the tool prints the ``VisionTransformer``
arguments that the weights determine. The number of heads is not stored in
the weights: give the trained one.

The source is read with weights-only unpickling (cosub_mm.fileio.safe_load):
a file whose pickle would run code is refused.

Usage:
    python tools/model_converters/mmpretrain_to_timm.py SRC DST
        [--backbone-only]

``DST`` ending in ``.safetensors`` is written with safetensors (installed
with timm), otherwise with ``torch.save``. Then, in timm::

    model = timm.models.VisionTransformer(num_heads=6, **printed_kwargs)
    timm.models.load_checkpoint(model, DST, strict=True)
    # or a named variant: timm.create_model('deit3_small_patch16_224',
    #     pretrained=True, pretrained_cfg_overlay=dict(file=DST), ...)
"""
import argparse
import math
import os
import os.path as osp
import sys
from collections import OrderedDict
from typing import Any, Dict

import torch

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(osp.dirname(HERE)))  # cosub_mm of this clone
sys.path.insert(0, HERE)
from vit_keys import load_state_dict, mmpretrain_to_timm  # noqa: E402

__all__ = ['convert_to_timm', 'timm_kwargs', 'load_state_dict']

# training-only modules of our classifiers: nothing of the network
_IGNORED = ('data_preprocessor.', 'cosub_loss.')


def convert_to_timm(state_dict: Dict[str, torch.Tensor],
                    backbone_only: bool = False,
                    layer_scale: str = 'timm'
                    ) -> 'OrderedDict[str, torch.Tensor]':
    """Map an mmpretrain ViT / DeiT III classifier or backbone to timm.

    Args:
        state_dict (dict): ``backbone.*`` (and ``head.*``) keys of
            mmpretrain's ``VisionTransformer`` / ``DeiT3`` with
            ``VisionTransformerClsHead`` or ``LinearClsHead``.
        backbone_only (bool): Drop the head and every other non-backbone
            key (a segmentor's decode heads and neck). Defaults to False.
        layer_scale (str): ``'timm'`` (``ls1.gamma``) or ``'deit'``
            (``gamma_1``). Defaults to 'timm'.

    Returns:
        OrderedDict: timm keys, the input's tensor objects.

    Raises:
        ValueError: No backbone keys, keys timm's ``VisionTransformer`` has
            no place for (a head with a hidden layer, a neck, both a final
            norm and a pooled-feature norm), or unknown backbone keys; each
            named.
    """
    kept: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    others = []
    for key, value in state_dict.items():
        if key.startswith(_IGNORED):
            continue
        if key.startswith('backbone.') or (key.startswith('head.')
                                           and not backbone_only):
            kept[key] = value
        elif not backbone_only:
            others.append(key)
    if not any(k.startswith('backbone.') for k in kept):
        raise ValueError(
            'No backbone.* keys: expected a checkpoint of an mmpretrain '
            'classifier or a backbone exported by BackboneExportHook, got '
            f'keys like {sorted(state_dict)[:4]}')
    if others:
        modules = sorted({k.split('.')[0] for k in others})
        raise ValueError(
            f'Weights outside backbone and head ({", ".join(modules)}): '
            "timm's VisionTransformer has no place for them; pass "
            '--backbone-only (backbone_only=True) to export the backbone '
            'alone')
    hidden = [k for k in kept if k.startswith('head.layers.pre_logits.')]
    if hidden:
        raise ValueError(
            f'{hidden[0]}: a VisionTransformerClsHead with hidden_dim has no '
            "timm equivalent (timm's VisionTransformer head is one Linear); "
            'export with --backbone-only')
    if 'backbone.ln1.weight' in kept and 'backbone.ln2.weight' in kept:
        raise ValueError(
            "backbone.ln1 and backbone.ln2: out_type='avg_featmap' with "
            "final_norm=True normalises twice; timm's VisionTransformer has "
            'either a final norm or an fc_norm')
    return mmpretrain_to_timm(kept, layer_scale)


def _grid(length: int) -> int:
    side = math.isqrt(length)
    return side if side * side == length else 0


def timm_kwargs(state_dict: Dict[str, torch.Tensor]) -> Dict[str, Any]:
    """The ``timm.models.VisionTransformer`` arguments timm-named weights
    determine (all but ``num_heads``); square images are assumed.

    Args:
        state_dict (dict): Output of :func:`convert_to_timm`.

    Returns:
        dict: ``img_size``, ``patch_size``, ``in_chans``, ``embed_dim``,
        ``depth``, ``mlp_ratio``, ``qkv_bias``, ``class_token``,
        ``no_embed_class``, ``init_values``, ``pre_norm``, ``final_norm``,
        ``global_pool``, ``fc_norm`` and ``num_classes``.
    """
    embed_dim, in_chans, patch, _ = state_dict[
        'patch_embed.proj.weight'].shape
    length = state_dict['pos_embed'].shape[1]
    class_token = 'cls_token' in state_dict
    # a patch-only pos_embed beside a class token is DeiT III's layout
    no_embed_class = class_token and _grid(length) > 0
    grid = _grid(length - (class_token and not no_embed_class))
    if not grid:
        raise ValueError(f'pos_embed of {length} tokens is not a square '
                         'grid (plus a class token)')
    depth = 1 + max(int(k.split('.')[1]) for k in state_dict
                    if k.startswith('blocks.'))
    layer_scale = any(k.endswith(('ls1.gamma', 'gamma_1'))
                      for k in state_dict)
    fc_norm = 'fc_norm.weight' in state_dict
    head = state_dict.get('head.weight')
    return dict(
        img_size=grid * patch,
        patch_size=patch,
        in_chans=in_chans,
        embed_dim=embed_dim,
        depth=depth,
        mlp_ratio=state_dict['blocks.0.mlp.fc1.weight'].shape[0] / embed_dim,
        qkv_bias='blocks.0.attn.qkv.bias' in state_dict,
        class_token=class_token,
        no_embed_class=no_embed_class,
        # any value builds LayerScale; the weights then set it
        init_values=1e-6 if layer_scale else None,
        pre_norm='norm_pre.weight' in state_dict,
        final_norm=fc_norm or 'norm.weight' in state_dict,
        global_pool='token' if class_token and not fc_norm else 'avg',
        fc_norm=fc_norm,
        num_classes=0 if head is None else head.shape[0])


def save(state_dict: Dict[str, torch.Tensor], path: str) -> None:
    """Write a plain state dict: safetensors for ``*.safetensors``."""
    if osp.dirname(path):
        os.makedirs(osp.dirname(path), exist_ok=True)
    if path.endswith('.safetensors'):
        try:
            from safetensors.torch import save_file
        except ImportError as err:
            raise ImportError('writing .safetensors needs safetensors '
                              '(pip install cosub_mm[timm])') from err
        tmp = f'{path}.tmp'
        save_file({k: v.contiguous() for k, v in state_dict.items()}, tmp)
        os.replace(tmp, path)
    else:
        from cosub_mm.fileio import atomic_save
        atomic_save(state_dict, path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description='Export an mmpretrain ViT / DeiT III checkpoint or '
        'exported backbone to timm VisionTransformer names')
    parser.add_argument('src', help='our checkpoint or backbone.pth')
    parser.add_argument('dst', help='timm state dict to write (.pth or '
                        '.safetensors)')
    parser.add_argument(
        '--backbone-only', action='store_true',
        help='export the backbone alone (drops the head and, for a '
        'segmentor, its neck and decode heads)')
    args = parser.parse_args(argv)
    state_dict = convert_to_timm(load_state_dict(args.src),
                                 args.backbone_only)
    save(state_dict, args.dst)
    kwargs = ', '.join(f'{k}={v!r}'
                       for k, v in timm_kwargs(state_dict).items())
    print(f'wrote {len(state_dict)} tensors to {args.dst}\n'
          f'timm: VisionTransformer(num_heads=<as trained>, {kwargs})')


if __name__ == '__main__':
    main()
