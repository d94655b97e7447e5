"""LayerDecayEncoderDecoder: mmpretrain's layer-decay constructor in mmseg."""
import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import cosub_mm  # noqa: F401
from conftest import TEST_CONFIGS

DECAY = 0.5
NUM_LAYERS = 4  # tiny_upernet's ViT


def _model(type_: str = 'cosub_mm.LayerDecayEncoderDecoder'):
    from mmseg.registry import MODELS
    cfg = copy.deepcopy(
        Config.fromfile(f'{TEST_CONFIGS}/tiny_upernet.py').model)
    cfg.type = type_
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(cfg)


def _lrs(model) -> dict:
    wrapper = build_optim_wrapper(
        model,
        dict(
            optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05),
            constructor='mmpretrain.LearningRateDecayOptimWrapperConstructor',
            paramwise_cfg=dict(layer_decay_rate=DECAY)))
    return {g['param_name']: g['lr'] for g in wrapper.optimizer.param_groups}


def test_lr_multipliers_follow_depth():
    lrs = _lrs(_model())

    def expected(depth: int) -> float:  # decay ** (L + 1 - depth)
        return DECAY**(NUM_LAYERS + 1 - depth)

    assert lrs['backbone.patch_embed.projection.weight'] == pytest.approx(
        expected(0))
    assert lrs['backbone.pos_embed'] == pytest.approx(expected(0))
    assert lrs['backbone.cls_token'] == pytest.approx(expected(0))
    assert lrs['backbone.layers.0.attn.qkv.weight'] == pytest.approx(
        expected(1))
    assert lrs['backbone.layers.1.ffn.layers.1.weight'] == pytest.approx(
        expected(2))
    assert lrs['backbone.layers.3.ln2.weight'] == pytest.approx(
        expected(4))
    for name in ('decode_head.conv_seg.weight',
                 'decode_head.bottleneck.conv.weight',
                 'auxiliary_head.conv_seg.bias', 'neck.convs.0.conv.weight'):
        assert lrs[name] == pytest.approx(1.0)
    # Every parameter got a group.
    assert len(lrs) == sum(1 for _ in _model().parameters())


def test_plain_encoder_decoder_lacks_layer_depth():
    with pytest.raises(NotImplementedError, match='get_layer_depth'):
        _lrs(_model('EncoderDecoder'))


def test_backbone_without_layer_depth_is_named():
    model = _model()
    model.backbone = torch.nn.Linear(2, 2)
    with pytest.raises(NotImplementedError, match='Linear'):
        model.get_layer_depth('backbone.weight')
