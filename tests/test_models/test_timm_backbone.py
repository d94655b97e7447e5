"""Cosub with timm models inside mmpretrain's TIMMBackbone: the drop-path
rates are found and set through the wrapper, the efficient twin of timm's
ViT Block equals timm's masked one in a cosub step, and TokenPooling feeds
mmpretrain's heads."""
import copy
from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper
from mmpretrain.structures import DataSample

import cosub_mm  # noqa: F401  (before timm: the torchvision fix)
from cosub_mm.engine.hooks import DropPathRateHook
from cosub_mm.models.drop_path import (block_drop_paths,
                                       copy_sharing_blocker,
                                       get_drop_path_rates)
from cosub_mm.registry import MODELS
from conftest import build_mmpretrain, cosub_loss_and_grads

try:
    from timm.layers import DropPath as TimmDropPath
except ImportError:  # a test dependency: fail loudly, never skip
    pytest.fail('timm is not installed: it is a test dependency, run '
                '`pip install -r requirements/tests.txt`', pytrace=False)

IMG, CLASSES, DEPTH = 32, 3, 4
# name -> (TIMMBackbone config, neck, head in_channels)
TIMM = {
    'deit3': (dict(type='mmpretrain.TIMMBackbone',
                   model_name='deit3_small_patch16_224', pretrained=False,
                   img_size=IMG, patch_size=8, embed_dim=32, depth=DEPTH,
                   num_heads=2, mlp_ratio=2.0, drop_path_rate=0.3),
              dict(type='cosub_mm.TokenPooling'), 32),
    'vit-avg': (dict(type='mmpretrain.TIMMBackbone',
                     model_name='vit_small_patch16_224', pretrained=False,
                     img_size=IMG, patch_size=8, embed_dim=32, depth=DEPTH,
                     num_heads=2, mlp_ratio=2.0, drop_path_rate=0.3),
                dict(type='cosub_mm.TokenPooling', pool='avg'), 32),
    'convnext': (dict(type='mmpretrain.TIMMBackbone',
                      model_name='convnext_atto', pretrained=False,
                      depths=(1, ) * DEPTH, dims=(8, 8, 16, 16),
                      drop_path_rate=0.3),
                 dict(type='GlobalAveragePooling'), 16),
}


def _cosub(name, efficient=False, share=True, **backbone_kw):
    backbone, neck, dims = copy.deepcopy(TIMM[name])
    backbone.update(backbone_kw)
    torch.manual_seed(0)
    model = build_mmpretrain(dict(
        type='cosub_mm.CosubClassifier', backbone=backbone, neck=neck,
        head=dict(type='VisionTransformerClsHead', num_classes=CLASSES,
                  in_channels=dims),
        efficient_drop_path=efficient, share_copies=share))
    with torch.no_grad():  # DeiT III's 1e-6 LayerScale hides the branches
        for key, p in model.named_parameters():
            if key.endswith('gamma'):
                p.fill_(0.5)
    return model


def _timm_slots(model):
    """Every drop-path slot of the timm model: (name, module), in order."""
    return [(n, m) for n, m in model.backbone.timm_model.named_modules()
            if n.rsplit('.', 1)[-1].startswith('drop_path')]


@pytest.mark.parametrize('name', sorted(TIMM))
def test_rates_are_found_through_the_wrapper(name):
    model = _cosub(name)
    slots = _timm_slots(model)
    assert len(slots) == DEPTH * (1 if name == 'convnext' else 2)
    # timm's own linear rule, read off its modules (nn.Identity at rate 0)
    built = [float(getattr(m, 'drop_prob', 0.0)) for _, m in slots]
    per_block = built[::len(slots) // DEPTH]
    assert per_block[0] == 0.0 and per_block[-1] == pytest.approx(0.3)
    assert get_drop_path_rates(model.backbone) == pytest.approx(per_block)
    assert all(k.startswith('timm_model.') for k in
               block_drop_paths(model.backbone))


@pytest.mark.parametrize('name', sorted(TIMM))
def test_the_uniform_rule_reaches_every_timm_block(name):
    model = _cosub(name)
    runner = SimpleNamespace(
        model=model, iter=0, epoch=0,
        message_hub=MessageHub.get_instance(f'test_timm_backbone_{name}'))
    hook = DropPathRateHook(rule='uniform')
    hook.before_train(runner)
    hook.before_train_iter(runner, 0)
    slots = _timm_slots(model)
    # the first block's nn.Identity became timm's DropPath, not mmcv's
    assert all(type(m) is TimmDropPath for _, m in slots)
    assert [m.drop_prob for _, m in slots] == pytest.approx(
        [0.3] * len(slots))


def test_a_timm_model_without_drop_path_is_refused():
    with pytest.raises(ValueError, match='no stochastic depth'):
        _cosub('deit3', drop_path_rate=0.0)


def _step(model, seed=3):
    """Losses and every parameter gradient of one cosub loss."""
    return cosub_loss_and_grads(model, IMG, CLASSES, seed)


def _assert_same_step(a, b):
    losses_a, grads_a = a
    losses_b, grads_b = b
    for key in ('loss_label', 'loss_distill'):
        torch.testing.assert_close(losses_b[key], losses_a[key])
    assert grads_a.keys() == grads_b.keys()
    for key in grads_a:
        torch.testing.assert_close(grads_b[key], grads_a[key], rtol=1e-4,
                                   atol=1e-6, msg=key)


@pytest.mark.parametrize('name', ['deit3', 'vit-avg'])
@pytest.mark.parametrize('share', [True, False], ids=['shared', 'unshared'])
def test_efficient_cosub_step_equals_timms_masked_step(name, share, plans):
    masked = _cosub(name)
    efficient = _cosub(name, efficient=True, share=share)
    assert {type(b).__name__ for b in efficient.backbone.timm_model.blocks
            } == {'EfficientTimmBlock'}
    for model in (masked, efficient):
        DropPathRateHook(rule='uniform').apply(model, 0.2)
    _assert_same_step(_step(masked), _step(efficient))
    (plan, ) = plans
    if share:
        # seed 3 at rate 0.2: both copies keep some branches of an image
        assert 0 < plan.computed_rows < plan.kept_rows
    else:
        assert plan.computed_rows == plan.kept_rows


def test_grad_checkpointing_turns_sharing_off_and_still_matches(plans):
    masked = _cosub('deit3')
    efficient = _cosub('deit3', efficient=True)
    for model in (masked, efficient):
        model.backbone.timm_model.set_grad_checkpointing(True)
    assert copy_sharing_blocker(efficient.backbone) == (
        'timm_model uses activation checkpointing (grad_checkpointing)')
    _assert_same_step(_step(masked), _step(efficient))
    assert plans == []  # no plan: the replay in backward would draw anew


def test_timm_convnext_trains_masked_and_has_no_efficient_twin():
    model = _cosub('convnext')
    wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2))
    data = dict(inputs=torch.randn(4, 3, IMG, IMG),
                data_samples=[DataSample().set_gt_label(i % CLASSES)
                              for i in range(4)])
    before = copy.deepcopy(model.backbone.state_dict())
    losses = model.train_step(data, wrapper)
    assert torch.isfinite(losses['loss_label'] + losses['loss_distill'])
    changed = [k for k, v in model.backbone.state_dict().items()
               if not torch.equal(v, before[k])]
    assert any('stages.3' in k for k in changed)
    with pytest.raises(ValueError, match='TIMMBackbone has no block'):
        _cosub('convnext', efficient=True)


def test_train_step_through_the_wrapper_updates_the_timm_vit():
    model = _cosub('deit3', efficient=True)
    wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2))
    data = dict(inputs=torch.randn(4, 3, IMG, IMG),
                data_samples=[DataSample().set_gt_label(i % CLASSES)
                              for i in range(4)])
    before = model.backbone.timm_model.blocks[-1].mlp.fc2.weight.clone()
    losses = model.train_step(data, wrapper)
    assert torch.isfinite(losses['loss_label'] + losses['loss_distill'])
    assert not torch.equal(before,
                           model.backbone.timm_model.blocks[-1].mlp.fc2.weight)


# --- TokenPooling


def test_token_pooling_takes_the_class_token_or_the_patch_mean():
    x = torch.randn(2, 5, 4)
    token = MODELS.build(dict(type='cosub_mm.TokenPooling'))
    (out, ) = token((x, ))
    assert torch.equal(out, x[:, 0])
    avg = MODELS.build(dict(type='cosub_mm.TokenPooling', pool='avg',
                            num_prefix_tokens=2))
    (out, ) = avg((x, ))
    torch.testing.assert_close(out, (x[:, 2] + x[:, 3] + x[:, 4]) / 3)
    assert repr(avg).endswith("(pool='avg', num_prefix_tokens=2)")


def test_token_pooling_refuses_bad_settings_and_feature_maps():
    with pytest.raises(ValueError, match='pool must be one of'):
        MODELS.build(dict(type='cosub_mm.TokenPooling', pool='max'))
    with pytest.raises(ValueError, match='needs a class token'):
        MODELS.build(dict(type='cosub_mm.TokenPooling',
                          num_prefix_tokens=0))
    neck = MODELS.build(dict(type='cosub_mm.TokenPooling'))
    with pytest.raises(ValueError, match='GlobalAveragePooling'):
        neck((torch.randn(2, 4, 3, 3), ))
