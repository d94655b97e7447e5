"""CosubLambdaHook, DropPathRateHook and BackboneExportHook.

The schedules are checked on a stand-in runner against values written out
by hand, then all three hooks run together in one real 4-iteration mmengine
training of a tiny CosubClassifier; its exported backbone is loaded into an
mmseg UperNet through ``init_cfg=dict(type='Pretrained', prefix=...)``.
"""
import copy
import os.path as osp
from types import SimpleNamespace

import pytest
import torch

import cosub_mm  # noqa: F401  (applies the stack fixes first)
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import MessageHub
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from cosub_mm.fileio import safe_load
from cosub_mm.engine.hooks import (BackboneExportHook, CosubLambdaHook,
                                   DropPathRateHook)
from cosub_mm.models import CosubLoss
from cosub_mm.models.drop_path import get_drop_path_rates
from cosub_mm.registry import HOOKS
from conftest import TEST_CONFIGS

VIT = dict(
    type='VisionTransformer',
    arch=dict(embed_dims=32, num_layers=4, num_heads=2,
              feedforward_channels=64),
    img_size=32,
    patch_size=8,
    drop_path_rate=0.1)


class _Model(torch.nn.Module):
    """Just what the hooks touch: a cosub loss and a backbone."""

    def __init__(self) -> None:
        super().__init__()
        from mmpretrain.models import VisionTransformer
        cfg = {k: v for k, v in VIT.items() if k != 'type'}
        self.backbone = VisionTransformer(**cfg)
        self.cosub_loss = CosubLoss(lambda_=0.5)


def _runner(model):
    return SimpleNamespace(
        model=model, iter=0, epoch=0,
        message_hub=MessageHub.get_instance('test_cosub_hooks'))


def test_lambda_warms_up_linearly_over_iters_to_configured_value():
    model = _Model()
    runner = _runner(model)
    hook = CosubLambdaHook(end=4)
    hook.before_train(runner)
    got = []
    for it in range(6):
        runner.iter = it
        hook.before_train_iter(runner, it)
        got.append(model.cosub_loss.lambda_)
    # 0.5 * min(it / 4, 1), written out
    assert got == pytest.approx([0.0, 0.125, 0.25, 0.375, 0.5, 0.5])
    assert runner.message_hub.get_scalar(
        'train/cosub_lambda').current() == pytest.approx(0.5)


def test_lambda_by_epoch_with_begin_changes_only_at_epoch_start():
    model = _Model()
    runner = _runner(model)
    hook = CosubLambdaHook(start_value=0.2, end_value=0.8, begin=1, end=3,
                           by_epoch=True)
    hook.before_train(runner)
    got = []
    for ep in range(5):
        runner.epoch = ep
        hook.before_train_epoch(runner)
        runner.iter = 10 * ep + 3
        hook.before_train_iter(runner, 3)  # no effect by epoch
        got.append(model.cosub_loss.lambda_)
    # epochs 0,1: 0.2; 2: halfway = 0.5; 3,4: 0.8
    assert got == pytest.approx([0.2, 0.2, 0.5, 0.8, 0.8])


def test_lambda_hook_reaches_model_inside_ddp_wrapper():
    model = _Model()
    wrapper = MMDistributedDataParallel.__new__(MMDistributedDataParallel)
    torch.nn.Module.__init__(wrapper)
    wrapper.module = model
    runner = _runner(wrapper)
    hook = CosubLambdaHook(start_value=0.0, end_value=0.3, end=2)
    hook.before_train(runner)
    runner.iter = 1
    hook.before_train_iter(runner, 1)
    assert model.cosub_loss.lambda_ == pytest.approx(0.15)


def test_lambda_hook_validates_values_and_model():
    with pytest.raises(ValueError, match='λ must be in'):
        CosubLambdaHook(end_value=1.5, end=3)
    with pytest.raises(ValueError, match='begin <= end'):
        CosubLambdaHook(begin=5, end=2)
    runner = _runner(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match='has no `cosub_loss`'):
        CosubLambdaHook(end=2).before_train(runner)


def test_drop_path_rate_hook_ramps_every_block_uniformly():
    model = _Model()
    runner = _runner(model)
    hook = DropPathRateHook(start_value=0.0, end_value=0.3, begin=2, end=5)
    hook.before_train(runner)
    seen = []
    for it in range(7):
        runner.iter = it
        hook.before_train_iter(runner, it)
        seen.append(get_drop_path_rates(model.backbone))
    # 0.3 * clip((it - 2) / 3, 0, 1) in each of the 4 blocks
    expected = [0.0, 0.0, 0.0, 0.1, 0.2, 0.3, 0.3]
    for rates, e in zip(seen, expected):
        assert rates == pytest.approx([e] * 4)
    # every DropPath module of a block follows, not only one
    probs = [m.drop_prob for m in model.backbone.modules()
             if type(m).__name__ == 'DropPath']
    assert len(probs) == 8 and probs == pytest.approx([0.3] * 8)


def test_drop_path_rate_hook_linear_rule_defaults_to_current_rate():
    model = _Model()  # built with a linear spread up to 0.1
    runner = _runner(model)
    hook = DropPathRateHook(start_value=0.0, end=2, by_epoch=True,
                            rule='linear')
    hook.before_train(runner)
    assert hook.end_value == pytest.approx(0.1)
    runner.epoch = 1
    hook.before_train_epoch(runner)
    # max 0.05 spread over 4 blocks: 0, 1/3, 2/3, 1 of it
    assert get_drop_path_rates(model.backbone) == pytest.approx(
        [0.0, 0.05 / 3, 0.1 / 3, 0.05])


def test_drop_path_rate_hook_rejects_bad_rate_and_rule():
    with pytest.raises(ValueError, match='rate must be in'):
        DropPathRateHook(end_value=1.0)
    with pytest.raises(ValueError, match='rule must be'):
        DropPathRateHook(rule='cosine')


def test_hooks_are_registered_with_documented_config_lines():
    for cls in (CosubLambdaHook, DropPathRateHook, BackboneExportHook):
        assert HOOKS.get(cls.__name__) is cls
        assert f"type='cosub_mm.{cls.__name__}'" in cls.__doc__


class _Recorder(Hook):
    """Record λ and block rates after the scheduling hooks ran."""
    priority = 'LOWEST'

    def __init__(self):
        self.lambdas, self.rates = [], []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.lambdas.append(runner.model.cosub_loss.lambda_)
        self.rates.append(get_drop_path_rates(runner.model.backbone))


@pytest.fixture(scope='module')
def trained(cls_data_root, tmp_path_factory):
    """A 4-iteration cosub training with the three hooks."""
    work_dir = str(tmp_path_factory.mktemp('hooks_run'))
    cfg = Config.fromfile(osp.join(TEST_CONFIGS, 'tiny_cls.py'))
    cfg.model.type = 'cosub_mm.CosubClassifier'
    cfg.model.backbone = copy.deepcopy(VIT)
    cfg.model.train_cfg = dict(augments=[dict(type='Mixup', alpha=0.8)])
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = cls_data_root
        cfg[key].dataset.serialize_data = False  # skips a 0.7 s gc.collect
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=4,
                         val_interval=100)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100)
    recorder = _Recorder()
    cfg.custom_hooks = [
        dict(type='cosub_mm.CosubLambdaHook', end=4),
        dict(type='cosub_mm.DropPathRateHook', start_value=0.02,
             end_value=0.2, begin=1, end=3),
        dict(type='cosub_mm.BackboneExportHook'),
    ]
    cfg.work_dir = work_dir
    cfg.experiment_name = 'test_cosub_hooks'
    import mmengine.config.config as config_module
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: one thread beats two shared ones
    # the Runner yapf-formats the config twice (~2 s), not under test here
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(config_module, 'FormatCode',
                   lambda text, **kwargs: (text, None))
        runner = Runner.from_cfg(cfg)
        runner.register_hook(recorder)
        runner.train()
    torch.set_num_threads(threads)
    return SimpleNamespace(runner=runner, recorder=recorder,
                           path=osp.join(work_dir, 'backbone.pth'))


def test_hooks_schedule_a_real_training_run(trained):
    rec = trained.recorder
    assert rec.lambdas == pytest.approx([0.0, 0.125, 0.25, 0.375])
    # 0.02 + 0.18 * clip((it - 1) / 2, 0, 1)
    for rates, e in zip(rec.rates, [0.02, 0.02, 0.11, 0.2]):
        assert rates == pytest.approx([e] * 4)
    hub = trained.runner.message_hub
    for key in ('loss', 'loss_label', 'loss_distill', 'agreement',
                'cosub_lambda', 'drop_path_rate'):
        assert f'train/{key}' in hub.log_scalars, key


def test_backbone_export_is_weights_only_with_backbone_keys(trained):
    ckpt = safe_load(trained.path)  # raises on anything but plain data
    state, meta = ckpt['state_dict'], ckpt['meta']
    model_state = trained.runner.model.state_dict()
    expected = sorted(k for k in model_state if k.startswith('backbone.'))
    assert sorted(state) == expected
    for k in expected:
        assert torch.equal(state[k], model_state[k]), k
    assert meta['backbone_type'] == 'VisionTransformer'
    assert meta['iter'] == 4 and meta['model_type'] == 'CosubClassifier'


def test_exported_backbone_loads_into_mmseg_upernet(trained):
    from mmseg.registry import MODELS as SEG_MODELS
    cfg = Config.fromfile(osp.join(TEST_CONFIGS, 'tiny_upernet.py'))
    backbone = cfg.model.backbone
    # The classifier's ViT (final norm on); 64 px: pos_embed gets resized.
    backbone.final_norm = True
    backbone.init_cfg = dict(
        type='Pretrained', checkpoint=trained.path, prefix='backbone.')
    with DefaultScope.overwrite_default_scope('mmseg'):
        seg = SEG_MODELS.build(cfg.model)
    seg.init_weights()
    exported = safe_load(trained.path)['state_dict']
    stripped = {k[len('backbone.'):]: v for k, v in exported.items()}
    seg_state = seg.backbone.state_dict()
    assert set(stripped) == set(seg_state)  # no missing, no unexpected
    for k, v in stripped.items():
        if k == 'pos_embed':
            assert seg_state[k].shape == (1, 1 + 8 * 8, 32)
            # the class token's embedding is copied, the grid resized
            assert torch.equal(seg_state[k][:, 0], v[:, 0])
        else:
            assert torch.equal(seg_state[k], v), k


def test_backbone_export_refuses_path_like_filename():
    with pytest.raises(ValueError, match='plain file name'):
        BackboneExportHook(filename='../x.pth')
