"""Efficient stochastic depth equals the masked one, draw for draw."""
import copy

import pytest
import torch

import cosub_mm  # noqa: F401
from cosub_mm.models.backbones import enable_efficient_drop_path
from cosub_mm.models.utils import drop_path_add, set_drop_path_rates
from cosub_mm.registry import MODELS

from tiny_archs import IMG, TINY_ARCHS

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
    grads = {
        k: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
        for k, p in model.named_parameters()
    }
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


def test_branch_runs_only_on_kept_rows():
    x = torch.randn(6, 5, requires_grad=True)
    seen = []

    def branch(h):
        seen.append(h.shape[0])
        return 2 * h

    torch.manual_seed(0)
    keep = (0.5 + torch.rand(6, 1)).floor().view(-1).bool()
    torch.manual_seed(0)
    out = drop_path_add(x, branch, 0.5, training=True)
    assert seen == [int(keep.sum())] and 0 < seen[0] < 6
    expected = x + torch.where(keep[:, None], 2 * x / 0.5, 0)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.where(keep[:, None], 5.0, 1.0)
                               .expand(6, 5))


def test_every_sample_dropping_skips_the_branch():
    x = torch.randn(4, 5)
    calls = []
    torch.manual_seed(0)
    out = drop_path_add(x, lambda h: calls.append(1) or h, 0.9999, True)
    assert calls == [] and torch.equal(out, x)
    # no sample drops: the whole batch, scaled by 1 / keep_prob
    out = drop_path_add(x, lambda h: 3 * h, 1e-9, True)
    torch.testing.assert_close(out, x + 3 * x / (1 - 1e-9))
    # eval: the plain residual
    assert torch.equal(drop_path_add(x, lambda h: 3 * h, 0.5, False),
                       x + 3 * x)


def test_cosub_classifier_switch_converts_the_backbone():
    backbone, neck, head = copy.deepcopy(TINY_ARCHS['deit3'])
    model = MODELS.build(
        dict(type='cosub_mm.CosubClassifier', backbone=backbone, head=head,
             efficient_drop_path=True))
    names = {type(m).__name__ for m in model.backbone.layers}
    assert names == {'EfficientDeiT3TransformerEncoderLayer'}
    default = MODELS.build(
        dict(type='cosub_mm.CosubClassifier', backbone=backbone, head=head))
    assert {type(m).__name__ for m in default.backbone.layers} == {
        'DeiT3TransformerEncoderLayer'}


def test_batchnorm_backbones_are_refused_with_a_clear_error():
    backbone = MODELS.build(copy.deepcopy(TINY_ARCHS['regnety'][0]))
    with pytest.raises(ValueError, match='RegNetY has no block'):
        enable_efficient_drop_path(backbone)
