"""tools/model_converters/deit_to_mmpretrain.py on a synthetic DeiT III."""
import os
import os.path as osp
import sys
from collections import OrderedDict

import pytest
import torch
from mmengine.registry import DefaultScope

import cosub_mm  # noqa: F401
from conftest import REPO, load_tool

TOOL = osp.join(REPO, 'tools', 'model_converters', 'deit_to_mmpretrain.py')
DIM, DEPTH, MLP, PATCH, IMG, CLASSES = 32, 2, 64, 16, 32, 10


def _tool():
    return load_tool(TOOL)


def timm_deit3_state_dict() -> 'OrderedDict[str, torch.Tensor]':
    """Names and shapes of facebookresearch/deit models_v2 (DeiT III)."""
    g = torch.Generator().manual_seed(0)
    shapes = OrderedDict([
        ('cls_token', (1, 1, DIM)),
        ('pos_embed', (1, (IMG // PATCH)**2, DIM)),  # no class position
        ('patch_embed.proj.weight', (DIM, 3, PATCH, PATCH)),
        ('patch_embed.proj.bias', (DIM, )),
    ])
    for i in range(DEPTH):
        b = f'blocks.{i}.'
        shapes.update([
            (b + 'gamma_1', (DIM, )), (b + 'gamma_2', (DIM, )),
            (b + 'norm1.weight', (DIM, )), (b + 'norm1.bias', (DIM, )),
            (b + 'attn.qkv.weight', (3 * DIM, DIM)),
            (b + 'attn.qkv.bias', (3 * DIM, )),
            (b + 'attn.proj.weight', (DIM, DIM)),
            (b + 'attn.proj.bias', (DIM, )),
            (b + 'norm2.weight', (DIM, )), (b + 'norm2.bias', (DIM, )),
            (b + 'mlp.fc1.weight', (MLP, DIM)), (b + 'mlp.fc1.bias', (MLP, )),
            (b + 'mlp.fc2.weight', (DIM, MLP)), (b + 'mlp.fc2.bias', (DIM, )),
        ])
    shapes.update([('norm.weight', (DIM, )), ('norm.bias', (DIM, )),
                   ('head.weight', (CLASSES, DIM)), ('head.bias', (CLASSES, ))])
    return OrderedDict(
        (k, torch.randn(s, generator=g)) for k, s in shapes.items())


def _mmpretrain_deit3():
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='DeiT3', arch=dict(
                embed_dims=DIM, num_layers=DEPTH, num_heads=2,
                feedforward_channels=MLP), img_size=IMG, patch_size=PATCH),
            head=dict(type='VisionTransformerClsHead', num_classes=CLASSES,
                      in_channels=DIM)))


def test_converted_dict_loads_strictly_with_the_same_values():
    src = timm_deit3_state_dict()
    converted = _tool().convert_deit3(src)
    model = _mmpretrain_deit3()
    model.load_state_dict(converted, strict=True)
    bb = model.backbone
    torch.testing.assert_close(bb.layers[1].attn.gamma1.weight,
                               src['blocks.1.gamma_1'])
    torch.testing.assert_close(bb.layers[0].ffn.gamma2.weight,
                               src['blocks.0.gamma_2'])
    torch.testing.assert_close(bb.layers[1].attn.qkv.weight,
                               src['blocks.1.attn.qkv.weight'])
    torch.testing.assert_close(bb.layers[0].ffn.layers[0][0].weight,
                               src['blocks.0.mlp.fc1.weight'])
    torch.testing.assert_close(bb.layers[0].ln2.weight,
                               src['blocks.0.norm2.weight'])
    torch.testing.assert_close(bb.patch_embed.projection.weight,
                               src['patch_embed.proj.weight'])
    torch.testing.assert_close(bb.ln1.bias, src['norm.bias'])
    torch.testing.assert_close(bb.cls_token, src['cls_token'])
    torch.testing.assert_close(bb.pos_embed, src['pos_embed'])
    torch.testing.assert_close(model.head.layers.head.weight,
                               src['head.weight'])


def test_round_trip_restores_names_and_values():
    tool = _tool()
    src = timm_deit3_state_dict()
    back = tool.convert_mmpretrain_to_deit3(tool.convert_deit3(src))
    assert list(back) == list(src)
    for key in src:
        assert torch.equal(back[key], src[key]), key


def test_newer_timm_layerscale_names_map_too():
    src = timm_deit3_state_dict()
    renamed = OrderedDict(
        (k.replace('gamma_1', 'ls1.gamma').replace('gamma_2', 'ls2.gamma'),
         v) for k, v in src.items())
    assert _tool().convert_deit3(renamed).keys() == \
        _tool().convert_deit3(src).keys()


def test_bad_inputs_are_named():
    tool = _tool()
    src = timm_deit3_state_dict()
    src['dist_token'] = torch.zeros(1, 1, DIM)
    with pytest.raises(ValueError, match='dist_token'):
        tool.convert_deit3(src)
    no_gamma = OrderedDict((k, v) for k, v in timm_deit3_state_dict().items()
                           if 'gamma' not in k)
    with pytest.raises(ValueError, match='LayerScale'):
        tool.convert_deit3(no_gamma)


def test_cli_writes_backbone_only_checkpoint_weights_only(tmp_path,
                                                          monkeypatch):
    tool = _tool()
    src_path, dst_path = tmp_path / 'deit3.pth', tmp_path / 'out.pth'
    torch.save({'model': timm_deit3_state_dict()}, src_path)
    monkeypatch.setattr(sys, 'argv', [
        TOOL, str(src_path), str(dst_path), '--backbone-only'])
    tool.main()
    out = cosub_mm.fileio.safe_load(str(dst_path))['state_dict']
    assert out and all(k.startswith('backbone.') for k in out)
    # A pickle that would run code is refused, not loaded.
    torch.save({'model': timm_deit3_state_dict(), 'x': os.getcwd},
               src_path)
    monkeypatch.setattr(sys, 'argv', [TOOL, str(src_path), str(dst_path)])
    with pytest.raises(cosub_mm.fileio.UnsafeCheckpointError):
        tool.main()
