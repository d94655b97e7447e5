"""Per-block drop-path rates of built mmpretrain backbones."""
import numpy as np
import pytest
from torch import nn

import cosub_mm  # noqa: F401
from cosub_mm.models.drop_path import (block_drop_paths,
                                       get_drop_path_rates,
                                       set_drop_path_rates)
from conftest import build_mmpretrain

TINY = dict(embed_dims=16, num_layers=4, num_heads=2, feedforward_channels=32)
BACKBONES = {
    'vit': dict(type='VisionTransformer', arch=TINY, img_size=32,
                patch_size=8, drop_path_rate=0.3),
    'deit3': dict(type='DeiT3', arch=TINY, img_size=32, patch_size=8,
                  drop_path_rate=0.3),
    'convnext': dict(type='ConvNeXt', arch=dict(depths=[2, 2],
                                                channels=[8, 16]),
                     out_indices=(1, ), drop_path_rate=0.3),
    'swin': dict(type='SwinTransformer', arch=dict(embed_dims=16,
                                                   depths=[2, 2],
                                                   num_heads=[1, 2]),
                 img_size=32, window_size=2, out_indices=(1, ),
                 drop_path_rate=0.3),
}
# DropPath modules per residual block: attention + MLP branches in the
# transformers, one in a ConvNeXt block
PER_BLOCK = {'vit': 2, 'deit3': 2, 'convnext': 1, 'swin': 2}


def _build(name, **kw):
    return build_mmpretrain(dict(BACKBONES[name], **kw))


def _module_rates(model):
    """Every DropPath module's rate in model order, read directly."""
    return [m.drop_prob for m in model.modules()
            if type(m).__name__ == 'DropPath']


@pytest.mark.parametrize('name', list(BACKBONES))
def test_built_rates_are_mmpretrains_linear_spread(name):
    model = _build(name)
    assert get_drop_path_rates(model) == pytest.approx(
        np.linspace(0, 0.3, 4).tolist(), abs=1e-7)


@pytest.mark.parametrize('name', list(BACKBONES))
def test_uniform_rule_sets_every_block_and_module(name):
    model = _build(name)
    rates = set_drop_path_rates(model, 0.2, 'uniform')
    assert rates == [0.2] * 4
    assert get_drop_path_rates(model) == pytest.approx([0.2] * 4)
    assert _module_rates(model) == pytest.approx([0.2] * 4 * PER_BLOCK[name])


@pytest.mark.parametrize('name', list(BACKBONES))
def test_linear_rule_grows_from_zero_to_rate(name):
    model = _build(name)
    set_drop_path_rates(model, 0.45, 'linear')
    expected = [0.0, 0.15, 0.3, 0.45]
    assert get_drop_path_rates(model) == pytest.approx(expected)
    per = PER_BLOCK[name]
    assert _module_rates(model) == pytest.approx(
        [r for r in expected for _ in range(per)])


def test_linear_rule_reproduces_what_mmpretrain_builds():
    built = _build('deit3', drop_path_rate=0.1)
    ours = _build('deit3', drop_path_rate=0.7)
    set_drop_path_rates(ours, 0.1, 'linear')
    assert get_drop_path_rates(ours) == get_drop_path_rates(built)


def test_convnext_identity_placeholders_become_drop_paths():
    # ConvNeXt builds nn.Identity where the rate is 0 (its first block, or
    # every block with drop_path_rate=0): the uniform rule must reach them.
    model = _build('convnext', drop_path_rate=0.0)
    assert not any(type(m).__name__ == 'DropPath' for m in model.modules())
    assert get_drop_path_rates(model) == [0.0] * 4
    set_drop_path_rates(model, 0.1, 'uniform')
    assert isinstance(model.stages[0][0].drop_path, nn.Module)
    assert type(model.stages[0][0].drop_path).__name__ == 'DropPath'
    assert _module_rates(model) == pytest.approx([0.1] * 4)
    assert list(block_drop_paths(model)) == [
        'stages.0.0', 'stages.0.1', 'stages.1.0', 'stages.1.1'
    ]


def test_bad_rule_rate_and_model_are_refused():
    model = _build('vit')
    with pytest.raises(ValueError, match='drop path rule must be one of'):
        set_drop_path_rates(model, 0.1, 'cosine')
    with pytest.raises(ValueError, match=r'must be in \[0, 1\)'):
        set_drop_path_rates(model, 1.0)
    with pytest.raises(ValueError, match='has no DropPath module'):
        set_drop_path_rates(nn.Sequential(nn.Linear(2, 2)), 0.1)


class _OwnDropPath(nn.Module):
    """A drop path of another library: built from its rate."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob


class _KeywordDropPath(_OwnDropPath):
    """A drop path that is not built from its rate alone."""

    def __init__(self, *, drop_prob: float) -> None:
        super().__init__(drop_prob)


def _two_blocks(drop_path: nn.Module) -> nn.Module:
    """blocks.0 with a rate-0 placeholder, blocks.1 with ``drop_path``."""
    model = nn.Module()
    model.blocks = nn.ModuleList([nn.Module(), nn.Module()])
    model.blocks[0].drop_path = nn.Identity()
    model.blocks[1].drop_path = drop_path
    return model


def test_placeholders_become_the_drop_path_kind_the_model_has():
    model = _build('convnext', drop_path_rate=0.3)  # mmcv's, Identity first
    assert type(model.stages[0][0].drop_path) is nn.Identity
    set_drop_path_rates(model, 0.1, 'uniform')
    assert type(model.stages[0][0].drop_path) is \
        type(model.stages[1][1].drop_path)
    assert type(model.stages[0][0].drop_path).__module__.startswith('mmcv')
    # another library's kind (timm's in a timm model) is kept
    model = _two_blocks(_OwnDropPath(0.2))
    set_drop_path_rates(model, 0.1, 'uniform')
    assert type(model.blocks[0].drop_path) is _OwnDropPath
    assert [b.drop_path.drop_prob for b in model.blocks] == [0.1, 0.1]
    # one that cannot be built from a rate: mmcv's
    model = _two_blocks(_KeywordDropPath(drop_prob=0.2))
    set_drop_path_rates(model, 0.1, 'uniform')
    assert type(model.blocks[0].drop_path).__module__.startswith('mmcv')
    assert get_drop_path_rates(model) == pytest.approx([0.1, 0.1])
