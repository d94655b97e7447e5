"""CosubEncoderDecoder: cosub's loss per pixel, full network at test."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData

import cosub_mm  # noqa: F401
from cosub_mm.models.drop_path import set_drop_path_rates
from conftest import TEST_CONFIGS

IGNORE = 255


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """Tiny models run as fast on one thread, and far faster when the
    machine's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(**kwargs):
    from mmseg.registry import MODELS
    cfg = copy.deepcopy(
        Config.fromfile(f'{TEST_CONFIGS}/tiny_upernet.py').model)
    cfg.type = 'cosub_mm.CosubEncoderDecoder'
    cfg.pop('data_preprocessor')
    cfg.update(kwargs)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg)
    model.init_weights()
    return model


def _batch(n: int = 2, size: int = 64):
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(n, 3, size, size, generator=g)
    samples = []
    for _ in range(n):
        label = torch.randint(0, 4, (1, size, size), generator=g)
        label[:, :4] = IGNORE
        sample = SegDataSample(metainfo=dict(
            img_shape=(size, size), pad_shape=(size, size),
            ori_shape=(size, size)))
        sample.gt_sem_seg = PixelData(data=label)
        samples.append(sample)
    return inputs, samples


def test_loss_matches_hand_computed_cosub_ce():
    model = _model(cosub_loss=dict(type='cosub_mm.CosubLoss', lambda_=0.3))
    assert model.cosub_loss.loss_type == 'ce'
    assert model.cosub_loss.ignore_index == IGNORE  # from the decode head
    model.train()
    inputs, samples = _batch()
    torch.manual_seed(1)
    losses = model.loss(inputs, samples)

    torch.manual_seed(1)  # the same drop-path and dropout draws
    feats = model.extract_feat(torch.cat([inputs, inputs]))
    logits = F.interpolate(model.decode_head(feats), size=(64, 64),
                           mode='bilinear', align_corners=False)
    z1, z2 = logits.chunk(2)
    y = torch.stack([s.gt_sem_seg.data[0] for s in samples])
    valid = y != IGNORE

    def soft_ce(z, p):
        return -(p * z.log_softmax(1)).sum(1)[valid].mean()

    label = (F.cross_entropy(z1, y, ignore_index=IGNORE) +
             F.cross_entropy(z2, y, ignore_index=IGNORE)) / 2
    distill = (soft_ce(z1, z2.softmax(1).detach()) +
               soft_ce(z2, z1.softmax(1).detach())) / 2
    torch.testing.assert_close(losses['decode.loss_label'], 0.7 * label)
    torch.testing.assert_close(losses['decode.loss_distill'],
                               0.3 * distill)
    assert 0.0 <= float(losses['decode.agreement']) <= 1.0
    assert 'aux.loss_ce' in losses


def test_submodels_differ_in_training_and_inference_is_full_network():
    model = _model()
    set_drop_path_rates(model.backbone, 0.5, 'uniform')
    inputs, samples = _batch(n=2)
    model.train()
    torch.manual_seed(0)
    feats = model.extract_feat(torch.cat([inputs, inputs]))
    a, b = feats[-1].chunk(2)
    assert not torch.allclose(a, b)  # two random submodels
    model.eval()
    with torch.no_grad():
        p1 = model.predict(inputs, copy.deepcopy(samples))
        p2 = model.predict(inputs, copy.deepcopy(samples))
    torch.testing.assert_close(p1[0].seg_logits.data, p2[0].seg_logits.data)


def test_distillation_gradient_does_not_reach_teacher():
    model = _model(cosub_loss=dict(type='cosub_mm.CosubLoss', lambda_=1.0))
    model.train()
    inputs, samples = _batch(n=2)
    losses = model.loss(inputs, samples)
    assert float(losses['decode.loss_label']) == 0.0
    losses['decode.loss_distill'].backward()
    # Only distillation: gradients flow (each student learns) ...
    grad = model.decode_head.conv_seg.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_refuses_backbone_without_stochastic_depth():
    from mmseg.registry import MODELS
    cfg = copy.deepcopy(
        Config.fromfile(f'{TEST_CONFIGS}/tiny_upernet.py').model)
    cfg.type = 'cosub_mm.CosubEncoderDecoder'
    cfg.backbone.drop_path_rate = 0.0
    with DefaultScope.overwrite_default_scope('mmseg'):
        with pytest.raises(ValueError, match='drop_path_rate'):
            MODELS.build(cfg)


def _seg_step(model, inputs, samples, seed=3):
    model.train()
    model.zero_grad()
    torch.manual_seed(seed)
    losses = model.loss(inputs, copy.deepcopy(samples))
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    return losses, {k: p.grad.clone() if p.grad is not None else
                    torch.zeros_like(p) for k, p in model.named_parameters()}


@pytest.mark.parametrize('share', [False, True])
def test_efficient_drop_path_equals_masked_draw_for_draw(share, plans):
    torch.manual_seed(0)
    masked = _model()
    efficient = _model(efficient_drop_path=True, share_copies=share)
    efficient.load_state_dict(masked.state_dict())
    for model in (masked, efficient):
        set_drop_path_rates(model.backbone, 0.3, 'uniform')
    assert type(efficient.backbone.layers[0]).__name__.startswith(
        'Efficient')
    inputs, samples = _batch(n=4)
    losses_m, grads_m = _seg_step(masked, inputs, samples)
    losses_e, grads_e = _seg_step(efficient, inputs, samples)
    for key in ('decode.loss_label', 'decode.loss_distill', 'aux.loss_ce'):
        torch.testing.assert_close(losses_e[key], losses_m[key])
    for key in grads_m:
        torch.testing.assert_close(grads_e[key], grads_m[key], rtol=1e-4,
                                   atol=1e-6, msg=key)
    (plan, ) = plans  # the step's submodel plan, logged
    assert (plan.computed_rows < plan.kept_rows) == share
    assert losses_e['plan.submodels'] == plan.summary()['submodels'] > 1


def test_batch_of_one_with_batchnorm_is_refused():
    model = _model()  # UPerHead and FCNHead use BatchNorm
    model.train()
    inputs, samples = _batch(n=1)
    with pytest.raises(ValueError, match='batch of 1 image with BatchNorm'):
        model.loss(inputs, samples)
