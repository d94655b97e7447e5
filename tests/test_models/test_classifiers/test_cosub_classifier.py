"""CosubClassifier on a tiny ViT: submodels, gradients, logging, predict."""
import copy
from unittest import mock

import pytest
import torch

import cosub_mm  # noqa: F401
from cosub_mm.models import CosubClassifier, CosubLoss
from cosub_mm.models.drop_path import get_drop_path_rates, set_drop_path_rates
from conftest import build_mmpretrain

NUM_CLASSES = 5
CFG = dict(
    type='cosub_mm.CosubClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                  feedforward_channels=64),
        img_size=32,
        patch_size=8,
        drop_path_rate=0.5),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=NUM_CLASSES,
        in_channels=32))


def _build(rule='uniform', **overrides):
    """The model, its rates set by ``rule`` as DropPathRateHook does."""
    cfg = copy.deepcopy(CFG)
    cfg.update(overrides)
    model = build_mmpretrain(cfg)
    if rule is not None:
        rate = max(get_drop_path_rates(model.backbone))
        set_drop_path_rates(model.backbone, rate, rule)
    return model


def _batch(n=8, seed=0, soft=False):
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=g)
    labels = torch.randint(0, NUM_CLASSES, (n, ), generator=g)
    samples = []
    for i, y in enumerate(labels.tolist()):
        s = DataSample().set_gt_label(y)
        if soft:  # as mmpretrain's Mixup leaves them: gt_score set
            score = torch.zeros(NUM_CLASSES)
            score[y] += 0.6
            score[(y + 1) % NUM_CLASSES] += 0.4
            s.set_gt_score(score)
        samples.append(s)
    return x, samples


def _copies_logits(model, x, k=2):
    """Logits of the k copies, computed the way loss() batches them."""
    return model.head(model.extract_feat(torch.cat([x] * k))).chunk(k)


def test_copies_differ_in_train_mode_and_match_in_eval_mode():
    torch.manual_seed(0)
    model = _build()
    x, _ = _batch()
    model.train()
    with torch.no_grad():
        a, b = _copies_logits(model, x)
    differs = (a - b).abs().amax(dim=1) > 1e-4
    # rate 0.5 in 4 DropPath modules: a sample's two masks coincide with
    # probability 1/16, so nearly all rows must differ
    assert differs.float().mean() >= 0.75
    model.eval()
    with torch.no_grad():
        a, b = _copies_logits(model, x)
    assert torch.allclose(a, b, atol=1e-6)


def test_each_sample_draws_its_own_mask_per_copy():
    model = _build()
    masks = []

    def spy(module, inp, out):
        x = inp[0]
        kept = (out.flatten(1).abs().sum(1) > 0)
        masks.append(kept & (x.flatten(1).abs().sum(1) > 0))

    handles = [m.register_forward_hook(spy) for m in model.backbone.modules()
               if type(m).__name__ == 'DropPath']
    model.train()
    torch.manual_seed(1)
    with torch.no_grad():
        _copies_logits(model, _batch(n=16)[0])
    for h in handles:
        h.remove()
    assert len(masks) == 4
    first, second = torch.stack(masks).chunk(2, dim=1)  # copies 1 and 2
    assert not torch.equal(first, second)
    kept = torch.stack(masks).float().mean().item()
    assert kept == pytest.approx(0.5, abs=0.15)


def test_loss_logs_terms_and_hand_computed_agreement():
    model = _build()
    model.train()
    x, samples = _batch(n=8, seed=3)
    torch.manual_seed(7)
    losses = model.loss(x, samples)
    assert set(losses) == {'loss_label', 'loss_distill', 'agreement'}
    torch.manual_seed(7)  # same masks again
    with torch.no_grad():
        a, b = _copies_logits(model, x)
    ref = CosubLoss()(a, b, torch.cat([s.gt_label for s in samples]))
    assert torch.allclose(losses['loss_label'], ref['loss_label'])
    assert torch.allclose(losses['loss_distill'], ref['loss_distill'])
    same = [int(a[i].argmax()) == int(b[i].argmax()) for i in range(8)]
    assert losses['agreement'].item() == pytest.approx(sum(same) / 8)
    # mmengine sums only the 'loss*' entries; agreement is logged only
    total, log_vars = model.parse_losses(losses)
    assert torch.allclose(total,
                          losses['loss_label'] + losses['loss_distill'])
    assert log_vars['agreement'] == pytest.approx(sum(same) / 8)


def test_loss_uses_mixup_scores_when_present():
    model = _build()
    model.train()
    x, samples = _batch(n=6, seed=4, soft=True)
    torch.manual_seed(5)
    losses = model.loss(x, samples)
    torch.manual_seed(5)
    with torch.no_grad():
        a, b = _copies_logits(model, x)
    target = torch.stack([s.gt_score for s in samples])
    ref = CosubLoss()(a, b, target)
    assert torch.allclose(losses['loss_label'], ref['loss_label'])
    # binarized: two positives per row, unlike the index target
    ref_idx = CosubLoss()(a, b, torch.cat([s.gt_label for s in samples]))
    assert not torch.allclose(losses['loss_label'], ref_idx['loss_label'])


def test_no_gradient_reaches_the_teacher_side():
    model = _build(cosub_loss=dict(type='cosub_mm.CosubLoss', lambda_=1.0))
    model.train()
    x, samples = _batch(n=4, seed=6)
    seen = {}
    forward_all = model.cosub_loss.forward_all

    def capture(logits, target):
        seen['logits'] = logits
        return forward_all(logits, target)

    with mock.patch.object(model.cosub_loss, 'forward_all', capture):
        losses = model.loss(x, samples)
    z1, z2 = seen['logits']
    g1, g2 = torch.autograd.grad(losses['loss_distill'], (z1, z2))
    n = z1.numel()
    # only the student path: d/dz_i 1/2 mean BCE(z_i, sg σ(z_j))
    s1, s2 = z1.detach().sigmoid(), z2.detach().sigmoid()
    assert torch.allclose(g1, 0.5 * (s1 - s2) / n, atol=1e-9)
    assert torch.allclose(g2, 0.5 * (s2 - s1) / n, atol=1e-9)


def test_predict_equals_image_classifier_with_same_weights():
    cosub = _build()
    plain_cfg = copy.deepcopy(CFG)
    plain_cfg['type'] = 'ImageClassifier'
    plain = build_mmpretrain(plain_cfg)
    plain.load_state_dict(cosub.state_dict(), strict=True)
    cosub.eval()
    plain.eval()
    x, samples = _batch(n=4, seed=8)
    with torch.no_grad():
        p1 = cosub.predict(x, copy.deepcopy(samples))
        p2 = plain.predict(x, copy.deepcopy(samples))
    for s1, s2 in zip(p1, p2):
        assert torch.equal(s1.pred_score, s2.pred_score)
        assert torch.equal(s1.pred_label, s2.pred_label)
    assert torch.equal(cosub.extract_feat(x)[0], plain.extract_feat(x)[0])


def test_refuses_backbone_without_stochastic_depth():
    backbone = copy.deepcopy(CFG['backbone'])
    backbone['drop_path_rate'] = 0.0
    with pytest.raises(ValueError, match='no stochastic depth'):
        _build(rule=None, backbone=backbone)


def test_the_model_keeps_the_backbone_rates():
    # the rule is DropPathRateHook's (the one knob): the model sets none
    kept = _build(rule=None)  # mmpretrain's own linear spread
    assert get_drop_path_rates(kept.backbone) == pytest.approx([0.0, 0.5])
    with pytest.raises(TypeError, match='drop_path_rule'):
        _build(rule=None, drop_path_rule='uniform')


def test_three_submodels_run_as_one_batch():
    model = _build(cosub_loss=dict(type='cosub_mm.CosubLoss',
                                   num_submodels=3))
    assert model.num_submodels == 3
    model.train()
    x, samples = _batch(n=4)
    calls = []
    original = model.backbone.forward

    def count(inputs):
        calls.append(inputs.shape[0])
        return original(inputs)

    with mock.patch.object(model.backbone, 'forward', count):
        losses = model.loss(x, samples)
    assert calls == [12]
    assert torch.isfinite(losses['loss_label'] + losses['loss_distill'])


def test_is_an_image_classifier():
    from mmpretrain.models import ImageClassifier
    assert issubclass(CosubClassifier, ImageClassifier)
    assert CosubClassifier.predict is ImageClassifier.predict
    assert CosubClassifier.extract_feat is ImageClassifier.extract_feat
