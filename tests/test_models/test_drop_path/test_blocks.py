"""Efficient stochastic depth equals the masked one, draw for draw."""
import contextlib
import copy

import pytest
import torch

import cosub_mm  # noqa: F401
from cosub_mm.models.backbones import (copy_sharing_blocker,
                                       enable_efficient_drop_path)
from cosub_mm.models.utils import (CopyTracker, drop_path_add,
                                   set_drop_path_rates, shared_copies)
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


def test_every_sample_dropping_gives_zero_gradients_like_masked():
    x = torch.randn(4, 5)
    lin = torch.nn.Linear(5, 5)
    rows = []
    torch.manual_seed(0)
    out = drop_path_add(x, lambda h: rows.append(len(h)) or lin(h), 0.9999,
                        True)
    assert rows == [1] and torch.equal(out, x)  # one row, times zero
    out.sum().backward()
    # zeros, not None: AdamW then decays and moves them as in the masked
    # form, and DDP sees every parameter used
    assert torch.equal(lin.weight.grad, torch.zeros(5, 5))
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


# --- shared copies: a branch computed once for an image's identical copies


def _linear_branch(seen):
    lin = torch.nn.Linear(5, 5)

    def branch(h):
        seen.append(h.shape[0])
        return torch.tanh(lin(h))

    return lin, branch


def _keep_mask(seed, rows, drop_prob):
    torch.manual_seed(seed)
    return (1 - drop_prob + torch.rand(rows, 1)).floor().view(-1).bool()


@pytest.mark.parametrize('k', [2, 3])
def test_shared_copies_compute_each_twin_branch_once(k):
    n, drop = 4, 0.4
    images = torch.randn(n, 5)
    keep = _keep_mask(7, k * n, drop).view(k, n)
    both = int(keep.all(0).sum())
    assert 0 < both < n  # a mixed draw: some images shared, some not

    def run(shared):
        a = images.clone().requires_grad_()
        seen = []
        lin, branch = _linear_branch(seen)
        torch.manual_seed(1)
        lin.reset_parameters()
        x = torch.cat([a] * k)
        torch.manual_seed(7)
        if shared:
            with shared_copies(k) as tracker:
                out = drop_path_add(x, branch, drop, True)
            assert (tracker.computed_rows, tracker.kept_rows) == (
                sum(seen), int(keep.sum()))
        else:
            out = drop_path_add(x, branch, drop, True)
        (out * torch.arange(out.numel()).view_as(out)).sum().backward()
        return out, a.grad, lin.weight.grad, sum(seen)

    out_s, ga_s, gw_s, rows_s = run(True)
    out_u, ga_u, gw_u, rows_u = run(False)
    assert rows_u == int(keep.sum())
    assert rows_s == rows_u - (k - 1) * both
    torch.testing.assert_close(out_s, out_u)
    torch.testing.assert_close(ga_s, ga_u)
    torch.testing.assert_close(gw_s, gw_u)


def test_copies_with_different_rows_are_not_shared():
    a, b = torch.randn(3, 5), torch.randn(3, 5)
    x = torch.cat([a, b])  # not copies, although declared as such
    seen = []
    _, branch = _linear_branch(seen)
    torch.manual_seed(0)
    with shared_copies(2) as tracker:
        out = drop_path_add(x, branch, 1e-9, True)
    assert seen == [6] and tracker.computed_rows == 6
    torch.testing.assert_close(out, x + branch(x))
    assert not tracker.twins.any()  # and never shared later


def test_tracker_forgets_twins_whose_decisions_differed():
    tracker = CopyTracker(2)
    x = torch.zeros(4, 3)  # equal values throughout, e.g. zero branches
    # image 0: copy 0 keeps, copy 1 drops -> no longer twins
    assert tracker.update(x, torch.tensor([1, 0, 0, 0]).bool(), True) \
        is None
    assert tracker.twins.tolist() == [False, True]
    shared = tracker.update(x, torch.ones(4, dtype=torch.bool), True)
    assert shared.tolist() == [False, True]


def _cosub(arch, efficient, share=True, rate=0.1, rule='uniform',
           **backbone_kw):
    backbone, neck, head = copy.deepcopy(TINY_ARCHS[arch])
    backbone.update(backbone_kw)
    torch.manual_seed(0)
    return MODELS.build(
        dict(type='cosub_mm.CosubClassifier', backbone=backbone, neck=neck,
             head=head, drop_path_rule=rule, drop_path_rate=rate,
             efficient_drop_path=efficient, share_copies=share))


def _cosub_step(model, seed=3):
    from mmpretrain.structures import DataSample
    model.train()
    model.zero_grad()
    x = torch.randn(8, 3, IMG, IMG,
                    generator=torch.Generator().manual_seed(5))
    samples = [DataSample().set_gt_label(i % 3) for i in range(8)]
    torch.manual_seed(seed)
    losses = model.loss(x, samples)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    return losses, {k: p.grad.clone() if p.grad is not None else
                    torch.zeros_like(p) for k, p in model.named_parameters()}


@pytest.fixture
def trackers(monkeypatch):
    """The CopyTrackers the classifier opens, in order."""
    from cosub_mm.models.classifiers import cosub_classifier
    opened = []

    @contextlib.contextmanager
    def recording(k):
        with shared_copies(k) as tracker:
            opened.append(tracker)
            yield tracker

    monkeypatch.setattr(cosub_classifier, 'shared_copies', recording)
    return opened


@pytest.mark.parametrize('arch,rule', [('deit3', 'uniform'),
                                       ('deit3', 'linear'),
                                       ('swin', 'uniform'),
                                       ('convnext', 'uniform'),
                                       ('pit', 'uniform')])
def test_cosub_sharing_equals_masked_and_computes_less(arch, rule, trackers):
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
    (tracker, ) = trackers
    # seed 3 at rate 0.1: both copies keep the first branch of most images
    assert 0 < tracker.computed_rows < tracker.kept_rows


def test_checkpointed_blocks_do_not_share_but_still_match(trackers):
    masked = _cosub('swin', efficient=False, with_cp=True)
    shared = _cosub('swin', efficient=True, with_cp=True)
    shared.load_state_dict(masked.state_dict())
    _, grads_m = _cosub_step(masked)
    _, grads_s = _cosub_step(shared)
    for key in grads_m:
        torch.testing.assert_close(grads_s[key], grads_m[key], rtol=1e-4,
                                   atol=1e-6, msg=key)
    assert trackers[0].computed_rows == trackers[0].kept_rows > 0


def test_dropout_or_masked_blocks_turn_sharing_off(trackers):
    from mmpretrain.models.backbones.deit3 import \
        DeiT3TransformerEncoderLayer
    model = _cosub('deit3', efficient=True, drop_rate=0.1)
    assert copy_sharing_blocker(model.backbone) == \
        'drop_after_pos is a dropout with p=0.1'
    _cosub_step(model)
    assert trackers == []  # no context opened: the copies' dropout differs
    model = _cosub('deit3', efficient=True)
    assert copy_sharing_blocker(model.backbone) is None
    model.backbone.layers[1].__class__ = DeiT3TransformerEncoderLayer
    assert copy_sharing_blocker(model.backbone).startswith(
        'layers.1.attn.out_drop is a masked drop path')
    _cosub_step(model)
    assert trackers == []
    assert _cosub('deit3', efficient=True, share=False).share_copies is False


@pytest.mark.parametrize('drop', [0.05, 0.2])
def test_shared_compute_matches_the_twin_probability(drop):
    """Over L branches, copies stay twins with probability q^j before branch
    j (q = (1-p)^2 + p^2) and then both keep with (1-p)^2, so sharing
    computes ``sum_j 2n(1-p) - n(1-p)^2 q^j`` rows instead of ``2Ln(1-p)``.
    """
    n, branches = 4000, 24
    x = torch.zeros(2 * n, 1)
    torch.manual_seed(0)
    with shared_copies(2) as tracker:
        for _ in range(branches):
            x = drop_path_add(x, lambda h: h + 1, drop, True)
    keep = 1 - drop
    q = keep**2 + drop**2
    expected = sum(2 * n * keep - n * keep**2 * q**j
                   for j in range(branches))
    assert tracker.computed_rows == pytest.approx(expected, rel=0.01)
    assert tracker.kept_rows == pytest.approx(2 * n * keep * branches,
                                              rel=0.01)
    # the twins' rows really are equal, the others not
    rows = x.view(2, n)
    assert torch.equal(rows[0][tracker.twins], rows[1][tracker.twins])
    assert tracker.twins.sum() == pytest.approx(n * q**branches, abs=60)


def test_rate_zero_branches_are_shared_without_drawing():
    """Blocks at rate 0 (e.g. early blocks of the linear rule) keep every
    copy, so twins stay twins and the branch runs once per image; like
    DropPath, no random number is drawn for them."""
    images = torch.randn(3, 5)
    x = torch.cat([images] * 2)
    seen = []
    _, branch = _linear_branch(seen)
    state = torch.get_rng_state()
    with shared_copies(2) as tracker:
        out = drop_path_add(x, branch, 0.0, True)
    assert torch.equal(torch.get_rng_state(), state)
    assert seen == [3] and tracker.twins.all()
    torch.testing.assert_close(out, x + branch(x))
    # outside the context: the plain residual on every row
    seen.clear()
    drop_path_add(x, branch, 0.0, True)
    assert seen == [6]
