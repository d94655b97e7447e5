"""CosubLoss against references written independently of its code."""
import math

import numpy as np
import pytest
import torch

import cosub_mm  # noqa: F401
from cosub_mm.models import CosubLoss
from cosub_mm.registry import MODELS

# Fixed logits of two submodels: 3 samples x 4 classes.
Z1 = [[1.0, -0.5, 0.2, 2.0], [-1.2, 0.3, 0.8, -0.1], [0.0, 1.5, -2.0, 0.4]]
Z2 = [[0.5, 0.1, -0.3, 1.0], [-0.2, -0.7, 1.1, 0.6], [0.9, 0.2, -1.0, -0.4]]
Y = [3, 2, 1]


def _sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def _bce(z, t):
    """Mean over samples x classes of -[t log σ(z) + (1-t) log(1-σ(z))]."""
    terms = [
        -(ti * math.log(_sig(zi)) + (1 - ti) * math.log(1 - _sig(zi)))
        for zr, tr in zip(z, t) for zi, ti in zip(zr, tr)
    ]
    return sum(terms) / len(terms)


def _probs(z):
    return [[_sig(v) for v in row] for row in z]


def _onehot(y, c=4):
    return [[1.0 if j == yi else 0.0 for j in range(c)] for yi in y]


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


def test_index_targets_equal_hand_computed_reference():
    out = CosubLoss()(_t(Z1), _t(Z2), torch.tensor(Y))
    y = _onehot(Y)
    label = 0.5 / 2 * (_bce(Z1, y) + _bce(Z2, y))
    distill = 0.5 / 2 * (_bce(Z1, _probs(Z2)) + _bce(Z2, _probs(Z1)))
    assert out['loss_label'].item() == pytest.approx(label, rel=1e-12)
    assert out['loss_distill'].item() == pytest.approx(distill, rel=1e-12)


def test_mixup_soft_targets_are_binarized_like_deit3():
    # Mixup of samples (3, 2, 1) with (0, 3, 1) at weight 0.7 / 0.3
    soft = [[0.3, 0.0, 0.0, 0.7], [0.0, 0.0, 0.7, 0.3], [0.0, 1.0, 0.0, 0.0]]
    out = CosubLoss(lambda_=0.3)(_t(Z1), _t(Z2), _t(soft))
    binary = [[1.0 if v > 0 else 0.0 for v in row] for row in soft]
    label = 0.7 / 2 * (_bce(Z1, binary) + _bce(Z2, binary))
    distill = 0.3 / 2 * (_bce(Z1, _probs(Z2)) + _bce(Z2, _probs(Z1)))
    assert out['loss_label'].item() == pytest.approx(label, rel=1e-12)
    assert out['loss_distill'].item() == pytest.approx(distill, rel=1e-12)
    # without binarization the soft targets are used as they are
    raw = CosubLoss(lambda_=0.3, binarize_target=False)(_t(Z1), _t(Z2),
                                                        _t(soft))
    assert raw['loss_label'].item() == pytest.approx(
        0.7 / 2 * (_bce(Z1, soft) + _bce(Z2, soft)), rel=1e-12)


def test_lambda_zero_is_plain_bce_on_each_submodel():
    z1, z2, y = _t(Z1), _t(Z2), torch.tensor(Y)
    out = CosubLoss(lambda_=0.0)(z1, z2, y)
    bce = torch.nn.BCEWithLogitsLoss()
    onehot = torch.nn.functional.one_hot(y, 4).double()
    expected = 0.5 * (bce(z1, onehot) + bce(z2, onehot))
    assert out['loss_distill'].item() == 0.0
    assert torch.allclose(out['loss_label'], expected, rtol=1e-12)


def test_default_equals_deit_engine_four_terms_value_and_gradient():
    torch.manual_seed(0)
    z = torch.randn(16, 10, dtype=torch.float64, requires_grad=True)
    # Mixup-like soft targets: two one-hots mixed, as timm's mixup_fn
    a, b = torch.randint(0, 10, (2, 8))
    eye = torch.eye(10, dtype=torch.float64)
    targets = 0.8 * eye[a] + 0.2 * eye[b]

    # facebookresearch/deit engine.py with --cosub --bce-loss, written out:
    criterion = torch.nn.BCEWithLogitsLoss()
    t = targets.gt(0.0).type(targets.dtype)
    outputs = torch.split(z, z.shape[0] // 2, dim=0)
    ref = 0.25 * criterion(outputs[0], t)
    ref = ref + 0.25 * criterion(outputs[1], t)
    ref = ref + 0.25 * criterion(outputs[0], outputs[1].detach().sigmoid())
    ref = ref + 0.25 * criterion(outputs[1], outputs[0].detach().sigmoid())
    (g_ref, ) = torch.autograd.grad(ref, z)

    z1, z2 = z.chunk(2)
    out = CosubLoss()(z1, z2, targets)
    total = out['loss_label'] + out['loss_distill']
    (g, ) = torch.autograd.grad(total, z)
    assert torch.allclose(total, ref, rtol=1e-12)
    assert torch.allclose(g, g_ref, rtol=1e-10, atol=1e-15)


def test_teacher_side_receives_no_gradient():
    z1 = _t(Z1).requires_grad_()
    z2 = _t(Z2).requires_grad_()
    out = CosubLoss(lambda_=1.0)(z1, z2, torch.tensor(Y))
    g1, g2 = torch.autograd.grad(out['loss_distill'], (z1, z2))
    # d/dz1 of 1/2·mean BCE(z1, σ(z2)) only; a gradient through the
    # teacher σ(z1) of the other term would add σ'(z1)·(...) here.
    n = 12
    exp1 = 0.5 * (torch.sigmoid(z1) - torch.sigmoid(z2)) / n
    exp2 = 0.5 * (torch.sigmoid(z2) - torch.sigmoid(z1)) / n
    assert torch.allclose(g1, exp1.detach(), rtol=1e-12)
    assert torch.allclose(g2, exp2.detach(), rtol=1e-12)


def test_three_submodels_learn_from_mean_of_the_other_two():
    torch.manual_seed(1)
    zs = [torch.randn(5, 6, dtype=torch.float64) for _ in range(3)]
    y = torch.randint(0, 6, (5, ))
    out = CosubLoss(num_submodels=3, lambda_=0.4).forward_all(zs, y)
    onehot = np.eye(6)[y.numpy()]
    p = [1 / (1 + np.exp(-z.numpy())) for z in zs]

    def bce(z, t):
        z = z.numpy()
        return np.mean(np.logaddexp(0, z) - t * z)  # stable BCE form

    teachers = [(p[1] + p[2]) / 2, (p[0] + p[2]) / 2, (p[0] + p[1]) / 2]
    label = 0.6 / 3 * sum(bce(z, onehot) for z in zs)
    distill = 0.4 / 3 * sum(bce(z, t) for z, t in zip(zs, teachers))
    assert out['loss_label'].item() == pytest.approx(label, rel=1e-10)
    assert out['loss_distill'].item() == pytest.approx(distill, rel=1e-10)
    # forward() takes the extra logits positionally
    out2 = CosubLoss(num_submodels=3, lambda_=0.4)(zs[0], zs[1], y, zs[2])
    assert out2['loss_distill'].item() == pytest.approx(distill, rel=1e-10)


def test_ce_type_uses_softmax_teacher():
    z1, z2, y = _t(Z1), _t(Z2), torch.tensor(Y)
    out = CosubLoss(loss_type='ce', lambda_=0.5)(z1, z2, y)

    def log_softmax(row):
        m = max(row)
        lse = m + math.log(sum(math.exp(v - m) for v in row))
        return [v - lse for v in row]

    def ce(z, t):
        return sum(-sum(ti * li for ti, li in zip(tr, log_softmax(zr)))
                   for zr, tr in zip(z, t)) / len(z)

    def softmax(z):
        return [[math.exp(v) for v in log_softmax(row)] for row in z]

    y1 = _onehot(Y)
    assert out['loss_label'].item() == pytest.approx(
        0.25 * (ce(Z1, y1) + ce(Z2, y1)), rel=1e-12)
    assert out['loss_distill'].item() == pytest.approx(
        0.25 * (ce(Z1, softmax(Z2)) + ce(Z2, softmax(Z1))), rel=1e-12)


@pytest.mark.parametrize('loss_type', ['bce', 'ce'])
def test_ignore_index_positions_count_in_no_term(loss_type):
    torch.manual_seed(2)
    z1 = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    z2 = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (2, 4, 4))
    y[0, :2] = 255
    loss = CosubLoss(loss_type=loss_type, ignore_index=255)
    out = loss(z1, z2, y)
    # reference: the valid pixels only, as (P, C) samples
    valid = y != 255
    flat = [z.movedim(1, -1)[valid] for z in (z1, z2)]
    ref = CosubLoss(loss_type=loss_type)(flat[0], flat[1], y[valid])
    assert torch.allclose(out['loss_label'], ref['loss_label'], rtol=1e-12)
    assert torch.allclose(out['loss_distill'], ref['loss_distill'],
                          rtol=1e-12)
    # changing the logits at ignored pixels changes nothing
    z1b = z1.clone()
    z1b[0, :, :2] += 5.0
    out_b = loss(z1b, z2, y)
    assert torch.allclose(out_b['loss_label'], out['loss_label'])
    assert torch.allclose(out_b['loss_distill'], out['loss_distill'])


def test_lambda_is_a_validated_property():
    loss = CosubLoss()
    loss.lambda_ = 0.25
    assert loss.lambda_ == 0.25
    for bad in (-0.1, 1.5, float('nan')):
        with pytest.raises(ValueError, match='lambda_ must be in'):
            loss.lambda_ = bad
    assert loss.lambda_ == 0.25


@pytest.mark.parametrize('kwargs, match', [
    (dict(lambda_=2.0), 'lambda_ must be in'),
    (dict(loss_type='mse'), "loss_type must be 'bce' or 'ce'"),
    (dict(num_submodels=1), 'num_submodels must be an integer >= 2'),
    (dict(num_submodels=2.0), 'num_submodels must be an integer >= 2'),
])
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CosubLoss(**kwargs)


def test_bad_inputs_name_the_problem():
    loss = CosubLoss()
    z = torch.zeros(3, 4)
    with pytest.raises(ValueError, match='submodel 2 have shape'):
        loss(z, torch.zeros(3, 5), torch.tensor(Y))
    with pytest.raises(ValueError, match=r'labels must be in \[0, 4\)'):
        loss(z, z, torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match='soft target shape'):
        loss(z, z, torch.zeros(3, 5))
    with pytest.raises(ValueError, match='expected 2 logits'):
        loss.forward_all([z, z, z], torch.tensor(Y))


def test_registered_and_built_by_scoped_name():
    loss = MODELS.build(dict(type='cosub_mm.CosubLoss', lambda_=0.1))
    assert isinstance(loss, CosubLoss) and loss.lambda_ == 0.1


def test_deit3_bce_baseline_is_cosub_with_lambda_zero_on_one_model():
    from cosub_mm.models import DeiT3BCELoss
    soft = _t([[0.3, 0.0, 0.0, 0.7], [0.0, 0.0, 0.7, 0.3],
               [0.0, 1.0, 0.0, 0.0]])
    binary = [[1.0 if v > 0 else 0.0 for v in row] for row in soft.tolist()]
    base = DeiT3BCELoss()
    assert base(_t(Z1), soft, avg_factor=3).item() == pytest.approx(
        _bce(Z1, binary), rel=1e-12)
    assert base(_t(Z1), torch.tensor(Y)).item() == pytest.approx(
        _bce(Z1, _onehot(Y)), rel=1e-12)
    assert DeiT3BCELoss(binarize_target=False)(
        _t(Z1), soft).item() == pytest.approx(_bce(Z1, soft.tolist()),
                                              rel=1e-12)
    with pytest.raises(ValueError, match='target shape'):
        base(_t(Z1), torch.zeros(3, 5))
    with pytest.raises(ValueError, match='plain mean'):
        base(_t(Z1), torch.tensor(Y), weight=torch.ones(3))


def _soft_ce(z, t):
    """Mean over samples of -Σ_c t log softmax(z), in float64."""
    def log_softmax(row):
        m = max(row)
        lse = m + math.log(sum(math.exp(v - m) for v in row))
        return [v - lse for v in row]
    return sum(-sum(ti * li for ti, li in zip(tr, log_softmax(zr)))
               for zr, tr in zip(z, t)) / len(z)


def _softmax(z):
    out = []
    for row in z:
        e = [math.exp(v - max(row)) for v in row]
        out.append([v / sum(e) for v in e])
    return out


@pytest.mark.parametrize('target', ['index', 'soft'])
def test_label_smoothing_applies_to_the_label_term_only(target):
    # timm's Mixup(label_smoothing=ε), which deit applies before its cosub
    # BCE: targets (1 - ε)·y + ε/C; the teacher σ(z_other) is not smoothed.
    eps, c = 0.1, 4
    soft = [[0.3, 0.0, 0.0, 0.7], [0.0, 0.0, 0.7, 0.3], [0.0, 1.0, 0.0, 0.0]]
    y = _onehot(Y) if target == 'index' else soft
    tgt = torch.tensor(Y) if target == 'index' else _t(soft)
    out = CosubLoss(binarize_target=False, label_smooth_val=eps)(
        _t(Z1), _t(Z2), tgt)
    smooth = [[(1 - eps) * v + eps / c for v in row] for row in y]
    label = 0.25 * (_bce(Z1, smooth) + _bce(Z2, smooth))
    distill = 0.25 * (_bce(Z1, _probs(Z2)) + _bce(Z2, _probs(Z1)))
    assert out['loss_label'].item() == pytest.approx(label, rel=1e-12)
    assert out['loss_distill'].item() == pytest.approx(distill, rel=1e-12)


def test_label_smoothing_follows_binarization_and_works_for_ce():
    eps, c = 0.2, 4
    soft = [[0.3, 0.0, 0.0, 0.7], [0.0, 0.0, 0.7, 0.3], [0.0, 1.0, 0.0, 0.0]]
    binary = [[1.0 if v > 0 else 0.0 for v in row] for row in soft]
    out = CosubLoss(label_smooth_val=eps)(_t(Z1), _t(Z2), _t(soft))
    smooth = [[(1 - eps) * v + eps / c for v in row] for row in binary]
    assert out['loss_label'].item() == pytest.approx(
        0.25 * (_bce(Z1, smooth) + _bce(Z2, smooth)), rel=1e-12)
    ce = CosubLoss(loss_type='ce', label_smooth_val=eps)(
        _t(Z1), _t(Z2), torch.tensor(Y))
    smooth = [[(1 - eps) * v + eps / c for v in row] for row in _onehot(Y)]
    assert ce['loss_label'].item() == pytest.approx(
        0.25 * (_soft_ce(Z1, smooth) + _soft_ce(Z2, smooth)), rel=1e-12)
    assert ce['loss_distill'].item() == pytest.approx(
        0.25 * (_soft_ce(Z1, _softmax(Z2)) + _soft_ce(Z2, _softmax(Z1))),
        rel=1e-12)


@pytest.mark.parametrize('bad', [-0.1, 1.0, float('nan')])
def test_label_smoothing_value_is_validated(bad):
    with pytest.raises(ValueError, match='label_smooth_val must be in'):
        CosubLoss(label_smooth_val=bad)


def _head_logits(dtype_ctx):
    """Logits of two submodels from one Linear head, 8 samples x 50."""
    torch.manual_seed(3)
    head = torch.nn.Linear(16, 50)
    x = torch.randn(16, 16) * 2.0
    with dtype_ctx:
        return head(x)


@pytest.mark.parametrize('loss_type', ['bce', 'ce'])
def test_bf16_autocast_logits_are_scored_in_fp32(loss_type):
    """Under AMP the head's logits are bf16/fp16; the teacher's sigmoid
    (softmax) and every term must still be computed in fp32."""
    z = _head_logits(torch.autocast('cpu', torch.bfloat16))
    assert z.dtype == torch.bfloat16  # what the head gives under autocast
    z = z.detach().requires_grad_()
    z1, z2 = z.chunk(2)
    y = torch.arange(8) % 50
    loss = CosubLoss(loss_type=loss_type, lambda_=0.5)
    with torch.autocast('cpu', torch.bfloat16):
        out = loss(z1, z2, y)
    assert out['loss_label'].dtype == torch.float32
    assert out['loss_distill'].dtype == torch.float32

    # float64 reference from the same bf16 logits (exactly representable)
    a, b = z1.detach().double().tolist(), z2.detach().double().tolist()
    onehot = _onehot(y.tolist(), c=50)
    if loss_type == 'bce':
        label = 0.25 * (_bce(a, onehot) + _bce(b, onehot))
        distill = 0.25 * (_bce(a, _probs(b)) + _bce(b, _probs(a)))
    else:
        label = 0.25 * (_soft_ce(a, onehot) + _soft_ce(b, onehot))
        distill = 0.25 * (_soft_ce(a, _softmax(b)) + _soft_ce(b, _softmax(a)))
    # fp32 arithmetic: ~1e-7 relative; a bf16 teacher or log-softmax (3
    # significant digits) is off by ~1e-3
    assert out['loss_label'].item() == pytest.approx(label, rel=1e-5)
    assert out['loss_distill'].item() == pytest.approx(distill, rel=1e-5)

    (grad, ) = torch.autograd.grad(out['loss_label'] + out['loss_distill'], z)
    assert grad.dtype == torch.bfloat16 and torch.isfinite(grad).all()


def test_bf16_autocast_training_step_matches_fp32_within_bf16_precision():
    """The whole head + loss under CPU bf16 autocast against plain fp32."""
    y = torch.arange(8) % 50
    losses, grads = {}, {}
    for name, ctx in (('fp32', torch.autocast('cpu', enabled=False)),
                      ('bf16', torch.autocast('cpu', torch.bfloat16))):
        torch.manual_seed(3)
        head = torch.nn.Linear(16, 50)
        x = torch.randn(16, 16) * 2.0
        with ctx:
            z1, z2 = head(x).chunk(2)
            out = CosubLoss()(z1, z2, y)
            total = out['loss_label'] + out['loss_distill']
        total.backward()
        losses[name] = total.item()
        grads[name] = head.weight.grad.clone()
    # bf16 has an 8-bit mantissa: logits carry ~4e-3 relative error
    assert losses['bf16'] == pytest.approx(losses['fp32'], rel=1e-2)
    assert torch.allclose(grads['bf16'], grads['fp32'], rtol=0.05,
                          atol=0.02 * grads['fp32'].abs().max().item())
