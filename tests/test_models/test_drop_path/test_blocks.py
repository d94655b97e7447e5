"""Efficient block twins equal the masked blocks, draw for draw, and the
table of convertible block types."""
import copy
import os.path as osp
import sys

import pytest
import torch

import cosub_mm  # noqa: F401
from cosub_mm.models.drop_path import (EFFICIENT_BLOCKS, EfficientBlock,
                                       copy_sharing_blocker,
                                       enable_efficient_drop_path,
                                       is_efficient_block, planned_branches,
                                       register_efficient_block,
                                       set_drop_path_rates)
from cosub_mm.registry import MODELS
from conftest import build_mmpretrain, cosub_loss_and_grads

# the tiny architectures are shared with the backbone tests
sys.path.insert(
    0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                'test_backbones'))
from tiny_archs import IMG, TINY_ARCHS  # noqa: E402
from toy_blocks import EfficientToyBlock, ToyBlock  # noqa: E402

VIT = dict(type='mmpretrain.VisionTransformer',
           arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                     feedforward_channels=64),
           img_size=IMG, patch_size=8, drop_path_rate=0.1,
           layer_scale_init_value=0.1)
SUPPORTED = {
    'vit': VIT,
    **{k: TINY_ARCHS[k][0] for k in ('deit3', 'swin', 'convnext', 'pit')}
}


def _pair(cfg, rate):
    """A masked backbone and its efficient copy with the same weights."""
    torch.manual_seed(0)
    masked = MODELS.build(copy.deepcopy(cfg))
    set_drop_path_rates(masked, rate, 'uniform')
    efficient = copy.deepcopy(masked)
    assert enable_efficient_drop_path(efficient) >= 2
    return masked, efficient


def _run(model, x, seed, train=True):
    """Output and parameter gradients of a fixed linear read-out."""
    model.train(train)  # mmpretrain's train() returns None
    model.zero_grad()
    torch.manual_seed(seed)
    out = model(x)[-1].flatten(1)
    w = torch.linspace(-1, 1, out.shape[1])
    (out * w).sum().backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()
             if p.grad is not None}
    return out.detach(), grads


@pytest.mark.parametrize('arch', sorted(SUPPORTED))
@pytest.mark.parametrize('rate', [0.5, 0.999, 1e-7],
                         ids=['mixed', 'all-drop', 'none-drop'])
def test_efficient_equals_masked_outputs_and_gradients(arch, rate):
    masked, efficient = _pair(SUPPORTED[arch], rate)
    x = torch.randn(8, 3, IMG, IMG)
    out_m, grads_m = _run(masked, x, seed=3)
    out_e, grads_e = _run(efficient, x, seed=3)
    torch.testing.assert_close(out_e, out_m, rtol=1e-4, atol=1e-5)
    assert grads_e.keys() == grads_m.keys()  # None exactly where masked has
    for k in grads_m:
        torch.testing.assert_close(
            grads_e[k], grads_m[k], rtol=1e-3, atol=1e-5, msg=k)
    if rate == 0.5:  # the mask really was mixed: not the full network
        full, _ = _run(masked, x, seed=3, train=False)
        assert (out_m - full).abs().amax() > 1e-3


@pytest.mark.parametrize('arch', sorted(SUPPORTED))
def test_eval_mode_is_untouched(arch):
    masked, efficient = _pair(SUPPORTED[arch], 0.5)
    x = torch.randn(4, 3, IMG, IMG)
    masked.eval()
    efficient.eval()
    with torch.no_grad():
        assert torch.equal(efficient(x)[-1], masked(x)[-1])
    # same parameters and checkpoint keys
    assert masked.state_dict().keys() == efficient.state_dict().keys()


def test_cosub_classifier_switch_converts_the_backbone():
    backbone, neck, head = copy.deepcopy(TINY_ARCHS['deit3'])
    model = build_mmpretrain(
        dict(type='cosub_mm.CosubClassifier', backbone=backbone, head=head,
             efficient_drop_path=True))
    names = {type(m).__name__ for m in model.backbone.layers}
    assert names == {'EfficientDeiT3TransformerEncoderLayer'}
    default = build_mmpretrain(
        dict(type='cosub_mm.CosubClassifier', backbone=backbone, head=head))
    assert {type(m).__name__ for m in default.backbone.layers} == {
        'DeiT3TransformerEncoderLayer'}


def test_batchnorm_backbones_are_refused_with_a_clear_error():
    backbone = MODELS.build(copy.deepcopy(TINY_ARCHS['regnety'][0]))
    with pytest.raises(ValueError, match='RegNetY has no block'):
        enable_efficient_drop_path(backbone)


# --- shared copies through whole models: the twins and the classifier


def _cosub(arch, efficient, share=True, rate=0.1, rule='uniform',
           **backbone_kw):
    backbone, neck, head = copy.deepcopy(TINY_ARCHS[arch])
    backbone.update(backbone_kw)
    torch.manual_seed(0)
    model = build_mmpretrain(
        dict(type='cosub_mm.CosubClassifier', backbone=backbone, neck=neck,
             head=head, efficient_drop_path=efficient, share_copies=share))
    set_drop_path_rates(model.backbone, rate, rule)
    return model


def _cosub_step(model, seed=3):
    return cosub_loss_and_grads(model, IMG, 3, seed)


@pytest.mark.parametrize('arch,rule', [('deit3', 'uniform'),
                                       ('deit3', 'linear'),
                                       ('swin', 'uniform'),
                                       ('convnext', 'uniform'),
                                       ('pit', 'uniform')])
def test_cosub_sharing_equals_masked_and_computes_less(arch, rule, plans):
    masked = _cosub(arch, efficient=False, rule=rule)
    shared = _cosub(arch, efficient=True, rule=rule)
    shared.load_state_dict(masked.state_dict())
    losses_m, grads_m = _cosub_step(masked)
    losses_s, grads_s = _cosub_step(shared)
    for key in ('loss_label', 'loss_distill'):
        torch.testing.assert_close(losses_s[key], losses_m[key])
    for key in grads_m:
        torch.testing.assert_close(grads_s[key], grads_m[key], rtol=1e-4,
                                   atol=1e-6, msg=key)
    (plan, ) = plans
    # seed 3 at rate 0.1: both copies keep the first branch of most images
    assert 0 < plan.computed_rows < plan.kept_rows
    assert len(plan.branches) == len(planned_branches(shared.backbone)) >= 3


@pytest.mark.parametrize('arch', ['swin', 'convnext'])
def test_checkpointed_blocks_do_not_share_but_still_match(arch, plans):
    masked = _cosub(arch, efficient=False, with_cp=True)
    shared = _cosub(arch, efficient=True, with_cp=True)
    shared.load_state_dict(masked.state_dict())
    _, grads_m = _cosub_step(masked)
    _, grads_s = _cosub_step(shared)
    for key in grads_m:
        torch.testing.assert_close(grads_s[key], grads_m[key], rtol=1e-4,
                                   atol=1e-6, msg=key)
    # the replay in backward reused the plan's rows: the same gradients
    assert plans[0].computed_rows == plans[0].kept_rows > 0


def test_dropout_or_masked_blocks_turn_sharing_off(plans):
    from mmpretrain.models.backbones.deit3 import \
        DeiT3TransformerEncoderLayer
    model = _cosub('deit3', efficient=True, drop_rate=0.1)
    assert copy_sharing_blocker(model.backbone) == \
        'drop_after_pos is a dropout with p=0.1'
    _cosub_step(model)
    assert plans == []  # no plan: the copies' dropout differs
    model = _cosub('deit3', efficient=True)
    assert copy_sharing_blocker(model.backbone) is None
    model.backbone.layers[1].__class__ = DeiT3TransformerEncoderLayer
    assert copy_sharing_blocker(model.backbone).startswith(
        'layers.1.attn.out_drop is a masked drop path')
    _cosub_step(model)
    assert plans == []
    assert _cosub('deit3', efficient=True, share=False).share_copies is False


# --- the table of convertible block types


def test_every_supported_block_is_in_the_table():
    from mmpretrain.models.backbones.convnext import ConvNeXtBlock
    from mmpretrain.models.backbones.deit3 import \
        DeiT3TransformerEncoderLayer
    from mmpretrain.models.backbones.swin_transformer import SwinBlock
    from mmpretrain.models.backbones.vision_transformer import \
        TransformerEncoderLayer

    from timm.models.vision_transformer import Block

    from cosub_mm.models.backbones import EfficientPiTBlock, PiTBlock
    from cosub_mm.models.drop_path import (
        EfficientConvNeXtBlock, EfficientDeiT3TransformerEncoderLayer,
        EfficientSwinBlock, EfficientTimmBlock,
        EfficientTransformerEncoderLayer)
    assert {k: v.twin for k, v in EFFICIENT_BLOCKS.items()} == {
        TransformerEncoderLayer: EfficientTransformerEncoderLayer,
        DeiT3TransformerEncoderLayer: EfficientDeiT3TransformerEncoderLayer,
        SwinBlock: EfficientSwinBlock,
        ConvNeXtBlock: EfficientConvNeXtBlock,
        Block: EfficientTimmBlock,  # timm's ViT, registered with timm
        PiTBlock: EfficientPiTBlock,  # registered by pit.py
    }
    # the ViT and DeiT III twins share one forward
    assert (EfficientTransformerEncoderLayer.forward is
            EfficientDeiT3TransformerEncoderLayer.forward)


def test_pit_built_efficient_is_pit_converted():
    from cosub_mm.models.backbones import EfficientPiTBlock
    cfg = dict(TINY_ARCHS['pit'][0], efficient_drop_path=True)
    torch.manual_seed(0)
    built = MODELS.build(cfg)
    blocks = [m for m in built.modules() if isinstance(m, EfficientPiTBlock)]
    assert len(blocks) == 2
    assert all(type(m) is EfficientPiTBlock for m in blocks)
    # already efficient: counted, not refused
    assert enable_efficient_drop_path(built) == 2
    masked, converted = _pair(TINY_ARCHS['pit'][0], 0.5)
    built.load_state_dict(masked.state_dict())
    set_drop_path_rates(built, 0.5, 'uniform')
    x = torch.randn(8, 3, IMG, IMG)
    out_b, _ = _run(built, x, seed=3)
    out_c, _ = _run(converted, x, seed=3)
    assert torch.equal(out_b, out_c)


def test_a_registered_custom_block_is_converted_draw_for_draw(table):
    torch.manual_seed(0)
    masked = torch.nn.Sequential(ToyBlock(), torch.nn.ReLU(), ToyBlock())
    model = copy.deepcopy(masked)
    with pytest.raises(ValueError, match='Sequential has no block'):
        enable_efficient_drop_path(model)  # not registered: refused
    assert register_efficient_block(ToyBlock, EfficientToyBlock) \
        is EfficientToyBlock
    assert table[ToyBlock] == EfficientBlock(EfficientToyBlock, None)
    assert enable_efficient_drop_path(model) == 2
    assert [type(m) for m in model] == [EfficientToyBlock, torch.nn.ReLU,
                                        EfficientToyBlock]
    assert is_efficient_block(model[0]) and not is_efficient_block(masked[0])
    assert copy_sharing_blocker(model) is None
    assert copy_sharing_blocker(masked).startswith('0.drop_path is a masked')
    # converting again changes nothing and still counts the blocks
    assert enable_efficient_drop_path(model) == 2
    x = torch.randn(16, 4)
    torch.manual_seed(3)
    out_m = masked(x)
    torch.manual_seed(3)
    out_e = model(x)
    torch.testing.assert_close(out_e, out_m)
    assert not torch.allclose(out_m, masked.eval()(x))  # a mixed draw


def test_a_block_failing_its_check_is_named_in_a_warning(table):
    register_efficient_block(ToyBlock, EfficientToyBlock,
                             check=lambda block: block.fc.in_features == 4)
    model = torch.nn.Sequential(ToyBlock(4), ToyBlock(4),
                                torch.nn.Linear(4, 3), ToyBlock(3))
    with pytest.warns(UserWarning, match=r'1 block\(s\) of Sequential keep '
                      r'the masked drop path.*: 3 \(ToyBlock\)$'):
        assert enable_efficient_drop_path(model) == 2
    assert [type(m) for m in model] == [EfficientToyBlock, EfficientToyBlock,
                                        torch.nn.Linear, ToyBlock]


def test_the_table_refuses_bad_registrations(table):
    with pytest.raises(TypeError, match='must be an nn.Module class'):
        register_efficient_block(lambda x: x, EfficientToyBlock)
    with pytest.raises(TypeError, match='must be a subclass of it'):
        register_efficient_block(ToyBlock, torch.nn.Linear)
    with pytest.raises(TypeError, match='must be a subclass of it'):
        register_efficient_block(ToyBlock, ToyBlock)

    class WithInit(EfficientToyBlock):

        def __init__(self):
            super().__init__()
            self.extra = torch.nn.Linear(4, 4)

    with pytest.raises(TypeError, match='WithInit defines __init__'):
        register_efficient_block(ToyBlock, WithInit)
    with pytest.raises(TypeError, match='has no branch_drop_paths'):
        register_efficient_block(ToyBlock,
                                 type('NoBranches', (ToyBlock, ), {}))
    assert ToyBlock not in table

    # as a decorator; registering the same twin again is a no-op
    assert register_efficient_block(ToyBlock)(EfficientToyBlock) \
        is EfficientToyBlock
    register_efficient_block(ToyBlock, EfficientToyBlock)

    class Other(EfficientToyBlock):
        pass

    with pytest.raises(ValueError, match='already converts to '
                       'EfficientToyBlock; pass force=True'):
        register_efficient_block(ToyBlock, Other)
    assert table[ToyBlock].twin is EfficientToyBlock
    register_efficient_block(ToyBlock, Other, force=True)
    assert table[ToyBlock].twin is Other
