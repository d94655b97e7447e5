"""The step-level submodel plan: the masked form's draws, twins by
construction, no sync inside a branch, one graph under torch.compile."""
import copy
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from mmcv.cnn.bricks import DropPath
from torch.overrides import TorchFunctionMode

import cosub_mm  # noqa: F401
from cosub_mm.models.drop_path import (SubmodelPlan, draw_submodel_plan,
                                       enable_efficient_drop_path,
                                       planned_branches,
                                       register_efficient_block,
                                       sample_keep_mask, set_drop_path_rates,
                                       timm_keep_mask)
from cosub_mm.registry import MODELS
from conftest import build_mmpretrain

sys.path.insert(
    0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                'test_backbones'))
from tiny_archs import IMG, TINY_ARCHS  # noqa: E402
from toy_blocks import EfficientToyBlock, ToyBlock  # noqa: E402


@pytest.fixture
def toy(table):
    """A chain of toy blocks at the given rates, masked and efficient."""
    register_efficient_block(ToyBlock, EfficientToyBlock)

    def build(rates):
        torch.manual_seed(0)
        masked = torch.nn.Sequential(*[ToyBlock(5, r) for r in rates])
        efficient = copy.deepcopy(masked)
        enable_efficient_drop_path(efficient)
        return masked, efficient

    return build


def _reference_keep(model, rows, seed):
    """The masked form's decisions: one draw per branch, forward order."""
    torch.manual_seed(seed)
    keep = []
    for block, drop in planned_branches(model):
        x = torch.empty(rows, 5)
        if drop.drop_prob <= 0:
            keep.append(torch.ones(rows, dtype=torch.bool))
        elif type(drop).__module__.startswith('timm'):
            keep.append(timm_keep_mask(x, drop.drop_prob))
        else:
            keep.append(sample_keep_mask(x, drop.drop_prob))
    return torch.stack(keep).numpy(), torch.get_rng_state()


def test_the_plan_draws_the_masked_forms_numbers(toy):
    rates = [0.3, 0.0, 0.5, 0.1, 0.0, 0.7]
    _, model = toy(rates)
    expected, state = _reference_keep(model, 12, seed=5)
    torch.manual_seed(5)
    plan = draw_submodel_plan(model, 12, 2, torch.device('cpu'))
    assert np.array_equal(plan.keep, expected)
    # as many numbers consumed: the draws after the step are the same too
    assert torch.equal(torch.get_rng_state(), state)
    assert plan.keep[[1, 4]].all()  # rate 0: every row keeps, nothing drawn


def test_timm_drop_paths_are_drawn_as_timm_draws_them(toy):
    timm_layers = pytest.importorskip('timm.layers')
    masked, model = toy([0.3, 0.5, 0.2])
    model[1].drop_path = timm_layers.DropPath(0.5)  # a timm branch between
    expected, state = _reference_keep(model, 16, seed=2)
    torch.manual_seed(2)
    plan = draw_submodel_plan(model, 16, 2, torch.device('cpu'))
    assert np.array_equal(plan.keep, expected)
    assert torch.equal(torch.get_rng_state(), state)


def _masked_twins(model, images, keep, k):
    """Reference: the images whose k copies hold equal activations before
    each branch, running the masked form on the plan's decisions.

    Each row goes through the branch alone: a BLAS kernel may round equal
    rows differently at different places of a batch (it does on some CPUs),
    which is not a difference between submodels."""
    n = len(images)
    x = torch.cat([images] * k)
    twins = []
    with torch.no_grad():
        for (block, drop), kb in zip(planned_branches(model), keep):
            rows = x.view(k, n, -1)
            twins.append((rows[1:] == rows[:1]).all(2).all(0).numpy())
            kp = 1 - drop.drop_prob
            out = torch.cat([block._branch(row[None]) for row in x])
            x = x + torch.from_numpy(kb)[:, None] * out / kp
    return twins


@pytest.mark.parametrize('k', [2, 3])
def test_twins_follow_from_the_plan_as_the_activations_say(toy, k):
    masked, model = toy([0.4] * 8)
    images = torch.randn(6, 5)
    torch.manual_seed(1)
    plan = draw_submodel_plan(model, k * 6, k, torch.device('cpu'))
    reference = _masked_twins(model, images, plan.keep, k)
    assert len(reference) == len(plan.twins_before) == 8
    for b, (ours, ref) in enumerate(zip(plan.twins_before, reference)):
        assert np.array_equal(ours, ref), f'branch {b}'
    assert reference[0].all() and not reference[-1].all()
    # a branch is computed once for the twins that all keep it
    for b, branch in enumerate(plan.branches):
        kb = plan.keep[b].reshape(k, 6)
        shared = plan.twins_before[b] & kb.all(0)
        assert branch.compute.numel() == kb.sum() - (k - 1) * shared.sum()
        assert branch.copies.numel() == (k - 1) * shared.sum()


@pytest.mark.parametrize('k', [2, 3])
def test_planned_step_equals_masked_with_and_without_sharing(toy, k):
    masked, model = toy([0.4, 0.0, 0.6, 0.999, 1e-7])
    images = torch.randn(6, 5)
    w = torch.linspace(-1, 1, 5 * 6 * k).view(6 * k, 5)

    def run(net, share=None):
        net.zero_grad()
        a = images.clone().requires_grad_()
        torch.manual_seed(3)
        x = torch.cat([a] * k)
        if share is None:
            out = net(x)
        else:
            plan = draw_submodel_plan(net, len(x), k, x.device, share)
            with plan.active():
                out = net(x)
        (out * w).sum().backward()
        grads = [p.grad for p in net.parameters()]
        return out.detach(), a.grad, grads

    ref = run(masked)
    for share in (True, False):
        out, ga, grads = run(model, share)
        torch.testing.assert_close(out, ref[0])
        torch.testing.assert_close(ga, ref[1])
        for g, g_ref in zip(grads, ref[2]):
            # every parameter gets a gradient, zeros where all rows drop
            assert g is not None
            torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize('drop', [0.05, 0.2])
def test_shared_compute_matches_the_twin_probability(toy, drop):
    """Over L branches, copies stay twins with probability q^j before branch
    j (q = (1-p)^2 + p^2) and then both keep with (1-p)^2, so sharing
    computes ``sum_j 2n(1-p) - n(1-p)^2 q^j`` rows instead of ``2Ln(1-p)``.
    """
    n, branches = 4000, 24
    _, model = toy([drop] * branches)
    torch.manual_seed(0)
    plan = draw_submodel_plan(model, 2 * n, 2, torch.device('cpu'))
    keep = 1 - drop
    q = keep**2 + drop**2
    expected = sum(2 * n * keep - n * keep**2 * q**j
                   for j in range(branches))
    assert plan.computed_rows == pytest.approx(expected, rel=0.01)
    assert plan.kept_rows == pytest.approx(2 * n * keep * branches,
                                           rel=0.01)
    assert plan.twins_after.sum() == pytest.approx(n * q**branches, abs=60)
    summary = plan.summary()
    assert summary['depth'] == pytest.approx(keep, abs=0.01)
    assert summary['shared'] == pytest.approx(
        1 - expected / (2 * n * keep * branches), abs=0.01)
    # a twin's copies are one submodel; the full network is drawn
    # (1-p)^24 of the time
    assert summary['submodels'] <= 2 * n - plan.twins_after.sum()
    assert summary['submodels'] < 2 * n * (1 - 0.9 * keep**branches)


def test_the_summary_counts_distinct_submodels():
    keep = np.array([[1, 1, 0, 1], [1, 1, 1, 1], [0, 0, 1, 1]], dtype=bool)
    block = torch.nn.Linear(1, 1)
    branches = [(block, DropPath(0.5))] * 3
    plan = SubmodelPlan(branches, keep, 2, True, torch.device('cpu'))
    # columns (1,1,0) twice, (0,1,1), (1,1,1): three submodels
    assert plan.summary()['submodels'] == 3
    assert plan.summary()['depth'] == pytest.approx(9 / 12)


class _CountSyncs(TorchFunctionMode):
    """Counts the calls that make a device wait for the host."""
    SYNCS = ('nonzero', 'item', '__bool__', 'tolist', 'any', 'all')

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, '__name__', '')
        if name in self.SYNCS:
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


def _tiny(arch, efficient=True):
    backbone = copy.deepcopy(TINY_ARCHS[arch][0])
    torch.manual_seed(0)
    model = MODELS.build(backbone)
    set_drop_path_rates(model, 0.3, 'uniform')
    if efficient:
        enable_efficient_drop_path(model)
    model.train()
    return model


@pytest.mark.parametrize('arch', ['deit3', 'swin', 'convnext', 'pit'])
def test_no_sync_inside_a_planned_forward(arch):
    model = _tiny(arch)
    x = torch.randn(8, 3, IMG, IMG)
    torch.manual_seed(0)
    plan = draw_submodel_plan(model, 8, 2, x.device)
    with plan.active(), _CountSyncs() as mode:
        model(x)[-1].sum().backward()
    assert mode.calls == []
    with _CountSyncs() as mode:  # the per-branch draw syncs every branch
        model(x)
    assert mode.calls.count('nonzero') == len(plan.branches)


def test_the_compiled_planned_backbone_is_one_graph():
    model = _tiny('deit3')
    x = torch.randn(8, 3, IMG, IMG)
    torch._dynamo.reset()
    unplanned = torch._dynamo.explain(model)(x)
    assert unplanned.graph_break_count >= len(planned_branches(model))
    torch.manual_seed(0)
    plan = draw_submodel_plan(model, 8, 2, x.device)
    with plan.active():
        planned = torch._dynamo.explain(model)(x)
    assert planned.graph_break_count == 0, planned.break_reasons
    assert planned.graph_count == 1


def test_a_plan_for_another_batch_is_refused(toy):
    _, model = toy([0.5, 0.5])
    plan = draw_submodel_plan(model, 8, 2, torch.device('cpu'))
    with plan.active(), pytest.raises(RuntimeError,
                                      match='plan expected 8 rows'):
        model(torch.randn(6, 5))
    with plan.active(), pytest.raises(RuntimeError, match='already active'):
        with plan.active():
            pass


def test_a_compiled_cosub_loss_breaks_the_graph_once_for_the_plan():
    from mmpretrain.structures import DataSample
    backbone, neck, head = copy.deepcopy(TINY_ARCHS['deit3'])
    model = build_mmpretrain(
        dict(type='cosub_mm.CosubClassifier', backbone=backbone, neck=neck,
             head=head, efficient_drop_path=True))
    set_drop_path_rates(model.backbone, 0.3, 'uniform')
    model.train()
    samples = [DataSample().set_gt_label(i % 3) for i in range(4)]
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model.loss)(
        torch.randn(4, 3, IMG, IMG), samples)
    # the draw (host-side numpy, one device-to-host copy) is the only break
    assert explained.graph_break_count <= 2, explained.break_reasons
    assert explained.graph_count <= 3
    assert model.last_plan is not None


def test_a_planned_bf16_step_matches_fp32_and_scores_in_fp32():
    from mmpretrain.structures import DataSample
    backbone, neck, head = copy.deepcopy(TINY_ARCHS['deit3'])
    torch.manual_seed(0)
    model = build_mmpretrain(
        dict(type='cosub_mm.CosubClassifier', backbone=backbone, neck=neck,
             head=head, efficient_drop_path=True,
             cosub_loss=dict(type='cosub_mm.CosubLoss', loss_type='ce')))
    set_drop_path_rates(model.backbone, 0.3, 'uniform')
    model.train()
    x = torch.randn(4, 3, IMG, IMG)
    samples = [DataSample().set_gt_label(i % 3) for i in range(4)]
    losses = {}
    for name, ctx in (('fp32', torch.autocast('cpu', enabled=False)),
                      ('bf16', torch.autocast('cpu', torch.bfloat16))):
        torch.manual_seed(1)  # the same submodels in both
        with ctx:
            losses[name] = model.loss(x, samples)
    for key in ('loss_label', 'loss_distill'):
        assert losses['bf16'][key].dtype == torch.float32
        torch.testing.assert_close(losses['bf16'][key], losses['fp32'][key],
                                   rtol=0.03, atol=0.01)
    assert not torch.equal(losses['bf16']['loss_label'],
                           losses['fp32']['loss_label'])  # bf16 did act


class _AtenGraphs:
    """A torch.compile backend that keeps the forward and backward aten
    graphs (AOT autograd, no decompositions) and runs them as they are."""

    def __init__(self):
        from functorch.compile import make_boxed_func
        from torch._dynamo.backends.common import aot_autograd
        self.graphs = []

        def keep(gm, example_inputs):
            self.graphs.append(gm)
            return make_boxed_func(gm.forward)

        self.backend = aot_autograd(fw_compiler=keep, bw_compiler=keep)

    def ops(self):
        """How often each aten op occurs in the graphs."""
        from collections import Counter
        return Counter(str(node.target).split('.')[1]
                       for gm in self.graphs for node in gm.graph.nodes
                       if node.op == 'call_function'
                       and str(node.target).startswith('aten.'))


def _output_and_grads(model, params, x):
    """Output and parameter gradients of a fixed linear read-out."""
    params.zero_grad()
    out = model(x)[-1].flatten(1)
    (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()
    return out.detach(), {k: p.grad.clone()
                          for k, p in params.named_parameters()
                          if p.grad is not None}


@pytest.mark.parametrize('arch,copies', [('deit3', 2), ('deit3', 3),
                                         ('swin', 2), ('convnext', 2),
                                         ('pit', 3)])
def test_a_compiled_planned_step_equals_the_masked_form(arch, copies):
    """Compiled, a planned branch is built from gathers and writes only
    (a scatter-add becomes atomic adds under inductor); its outputs and
    gradients are the masked network's, twins included."""
    masked = _tiny(arch, efficient=False)
    efficient = _tiny(arch)
    x = torch.cat([torch.randn(4, 3, IMG, IMG)] * copies)
    masked_aten = _AtenGraphs()
    torch._dynamo.reset()
    torch.manual_seed(5)
    out_m, grads_m = _output_and_grads(
        torch.compile(masked, backend=masked_aten.backend), masked, x)
    aten = _AtenGraphs()
    torch._dynamo.reset()
    compiled = torch.compile(efficient, backend=aten.backend)
    torch.manual_seed(5)
    plan = draw_submodel_plan(efficient, len(x), copies, x.device)
    assert plan.summary()['shared'] > 0  # some twins computed once
    with plan.active():
        out_c, grads_c = _output_and_grads(compiled, efficient, x)
    torch.testing.assert_close(out_c, out_m, rtol=1e-4, atol=1e-5)
    assert grads_c.keys() == grads_m.keys()
    for key in grads_m:
        torch.testing.assert_close(grads_c[key], grads_m[key], rtol=1e-3,
                                   atol=1e-5, msg=key)
    assert len(aten.graphs) == 2  # one forward graph, one backward graph
    ops, masked_ops = aten.ops(), masked_aten.ops()
    for op in ('index_add', 'index_put', 'scatter_add'):
        # the architecture's own (Swin's position-bias table), none added
        assert ops[op] == masked_ops[op], op
    assert ops['index_copy'] >= len(plan.branches)
