"""The six architectures of the cosub paper (DeiT III, Swin, ConvNeXt,
RegNetY, XCiT, PiT): per-sample stochastic depth and cosub training."""
import copy

import pytest
import torch
from mmengine.optim import OptimWrapper
from mmpretrain.structures import DataSample

import cosub_mm  # noqa: F401
from cosub_mm.models.drop_path import set_drop_path_rates
from cosub_mm.registry import MODELS
from conftest import build_mmpretrain

from tiny_archs import IMG, NUM_CLASSES, TINY_ARCHS

ARCHS = sorted(TINY_ARCHS)


def _features(backbone, x):
    out = backbone(x)[-1]
    return out.flatten(1)


@pytest.mark.parametrize('arch', ARCHS)
def test_stochastic_depth_is_per_sample(arch):
    """Copies of one image become different submodels in train mode (a
    per-batch drop path would give identical rows) and the same network in
    eval mode."""
    torch.manual_seed(0)
    backbone = MODELS.build(TINY_ARCHS[arch][0])
    set_drop_path_rates(backbone, 0.5, 'uniform')
    x = torch.rand(1, 3, IMG, IMG).expand(8, -1, -1, -1).contiguous()

    backbone.train()
    with torch.no_grad():
        train_out = _features(backbone, x)
    spread = (train_out - train_out[:1]).abs().amax()
    assert spread > 1e-3, f'{arch}: all copies took the same submodel'

    backbone.eval()
    with torch.no_grad():
        eval_out = _features(backbone, x)
    torch.testing.assert_close(eval_out, eval_out[:1].expand_as(eval_out))


def _cosub_model(arch, **kwargs):
    backbone, neck, head = copy.deepcopy(TINY_ARCHS[arch])
    model = build_mmpretrain(
        dict(
            type='cosub_mm.CosubClassifier',
            backbone=backbone,
            neck=neck,
            head=head,
            data_preprocessor=dict(
                type='ClsDataPreprocessor',
                num_classes=NUM_CLASSES,
                mean=[127.5] * 3,
                std=[127.5] * 3),
            train_cfg=dict(augments=dict(type='Mixup', alpha=0.8)),
            **kwargs))
    set_drop_path_rates(model.backbone, 0.2, 'uniform')
    return model


def _batch(n=4):
    g = torch.Generator().manual_seed(1)
    inputs = [
        torch.randint(0, 256, (3, IMG, IMG), generator=g, dtype=torch.uint8)
        for _ in range(n)
    ]
    samples = [DataSample().set_gt_label(i % NUM_CLASSES) for i in range(n)]
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('arch', ARCHS)
def test_trains_two_iterations_with_cosub_classifier(arch):
    torch.manual_seed(0)
    model = _cosub_model(arch)
    model.init_weights()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    for _ in range(2):
        log = model.train_step(_batch(), optim)
        assert set(log) >= {'loss', 'loss_label', 'loss_distill'}
        assert torch.isfinite(log['loss'])
        # the two terms are weighted (1-λ)/2 and λ/2 of positive BCEs
        assert log['loss_label'] > 0 and log['loss_distill'] > 0
        torch.testing.assert_close(log['loss'],
                                   log['loss_label'] + log['loss_distill'])
    changed = [
        k for k, v in model.named_parameters()
        if not torch.equal(v.detach(), before[k])
    ]
    assert any(k.startswith('backbone.') for k in changed)
    assert any(k.startswith('head.') for k in changed)
    # the full network predicts at test time, deterministically
    model.eval()
    data = _batch(2)
    p1 = model.val_step(data)[0].pred_score
    p2 = model.val_step(data)[0].pred_score
    torch.testing.assert_close(p1, p2)
