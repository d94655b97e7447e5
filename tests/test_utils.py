"""cosub_mm.utils: scale_schedule keeps schedules proportional to the run,
check_checkpoint_matches names what differs."""
import re

import pytest
import torch
from mmengine.config import Config

import cosub_mm  # noqa: F401
from cosub_mm.utils import (check_checkpoint_matches, log_metrics_by_iter,
                            scale_schedule)
from conftest import build_mmpretrain


def _iter_cfg() -> Config:
    return Config(dict(
        train_cfg=dict(by_epoch=False, max_iters=1000, val_interval=100),
        param_scheduler=[
            dict(type='LinearLR', by_epoch=False, begin=0, end=100),
            dict(type='CosineAnnealingLR', by_epoch=False, begin=100,
                 end=1000),
            dict(type='ConstantLR', by_epoch=True, begin=0, end=3),
        ],
        custom_hooks=[dict(type='cosub_mm.CosubLambdaHook', begin=200,
                           end=400), dict(type='x.Hook')]))


def test_iteration_bounds_scale_and_epoch_bounds_stay():
    cfg = _iter_cfg()
    assert scale_schedule(cfg, 250) == pytest.approx(0.25)
    warm, cos, const = cfg.param_scheduler
    assert (warm.begin, warm.end, cos.begin, cos.end) == (0, 25, 25, 250)
    assert (const.begin, const.end) == (0, 3)  # another unit: unchanged
    assert (cfg.custom_hooks[0].begin, cfg.custom_hooks[0].end) == (50, 100)
    assert cfg.train_cfg.max_iters == 250
    assert cfg.train_cfg.val_interval == 100
    scale_schedule(cfg, 50)
    assert cfg.train_cfg.val_interval == 50  # never beyond the run


def test_epoch_based_configs_scale_their_epochs():
    cfg = Config(dict(
        train_cfg=dict(by_epoch=True, max_epochs=800),
        param_scheduler=[
            dict(type='LinearLR', by_epoch=True, begin=0, end=5,
                 convert_to_iter_based=True),
            dict(type='CosineAnnealingLR', by_epoch=True, begin=5, end=800)]))
    scale_schedule(cfg, 80)
    assert cfg.train_cfg.max_epochs == 80
    # 0.5 epochs of warmup would round away: it stays one epoch
    assert [(s.begin, s.end) for s in cfg.param_scheduler] == [(0, 1),
                                                               (1, 80)]


def test_bad_lengths_name_the_field():
    with pytest.raises(ValueError, match='train_cfg.max_iters'):
        scale_schedule(Config(dict(train_cfg=dict(by_epoch=False))), 10)
    with pytest.raises(ValueError, match='> 0'):
        scale_schedule(_iter_cfg(), 0)


def test_iteration_runs_log_metrics_at_their_iteration():
    cfg = _iter_cfg()
    cfg.default_hooks = dict(logger=dict(type='LoggerHook'))
    log_metrics_by_iter(cfg)
    assert cfg.default_hooks.logger.log_metric_by_epoch is False
    cfg.default_hooks.logger.log_metric_by_epoch = True  # the config's own
    log_metrics_by_iter(cfg)
    assert cfg.default_hooks.logger.log_metric_by_epoch is True
    epochs = Config(dict(train_cfg=dict(by_epoch=True, max_epochs=3),
                         default_hooks=dict(logger=dict(type='LoggerHook'))))
    log_metrics_by_iter(epochs)
    assert 'log_metric_by_epoch' not in epochs.default_hooks.logger


def _tiny_vit(num_classes: int):
    return build_mmpretrain(dict(
        type='ImageClassifier',
        backbone=dict(type='VisionTransformer', arch=dict(
            embed_dims=32, num_layers=1, num_heads=2,
            feedforward_channels=32), img_size=32, patch_size=8),
        head=dict(type='VisionTransformerClsHead',
                  num_classes=num_classes, in_channels=32)))


def test_checkpoint_with_other_class_count_lists_shape_mismatch(tmp_path):
    ckpt = str(tmp_path / 'five_classes.pth')
    torch.save({'state_dict': _tiny_vit(5).state_dict()}, ckpt)
    model = _tiny_vit(3)
    with pytest.raises(ValueError, match=re.escape(
            'shape mismatches (checkpoint vs model) (2): '
            'head.layers.head.weight (5, 32) vs (3, 32), '
            'head.layers.head.bias (5,) vs (3,)')) as err:
        check_checkpoint_matches(model, ckpt)
    assert 'missing keys' not in str(err.value)
    torch.save({'state_dict': model.state_dict()}, ckpt)
    check_checkpoint_matches(model, ckpt)  # a matching one passes
