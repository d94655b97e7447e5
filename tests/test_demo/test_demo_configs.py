"""The demo configs (configs/demo/) on real Fashion-MNIST.

The cosub config trains two iterations of the real demo ViT on a 256-image
subset; its baseline twin differs only by the classifier; a missing data
set stops with the command that fixes it.
"""
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

import cosub_mm  # noqa: F401
from conftest import REPO
from cosub_mm.compat import safe_load
from cosub_mm.models.utils import get_drop_path_rates

sys.path.insert(0, osp.join(REPO, 'tools', 'analysis_tools'))
from replicate_fashion_mnist import (BASE_CFG, COSUB_CFG,  # noqa: E402
                                     check_fashion_mnist, schedule_options)


def _cfg(path: str, work_dir: str, name: str, **options) -> Config:
    cfg = Config.fromfile(osp.join(REPO, path))
    cfg.merge_from_dict(options)
    cfg.work_dir = work_dir
    cfg.experiment_name = f'test_demo_{name}_{osp.basename(work_dir)}'
    return cfg


def test_cosub_config_trains_on_a_256_image_subset(tmp_path):
    opts = dict(schedule_options(1, val_interval=1))
    opts.update({
        'train_dataloader.dataset.indices': 256,
        'val_dataloader.dataset.indices': 100,
        'train_dataloader.dataset.data_root':
        osp.join(REPO, 'data', 'fashion_mnist'),
        'val_dataloader.dataset.data_root':
        osp.join(REPO, 'data', 'fashion_mnist'),
    })
    work_dir = str(tmp_path / 'cosub')
    runner = Runner.from_cfg(_cfg(COSUB_CFG, work_dir, 'cosub', **opts))
    assert len(runner.train_dataloader.dataset) == 256
    model = runner.model
    assert type(model).__name__ == 'CosubClassifier'
    # the real demo ViT: 6 uniform blocks on 1-channel 28x28 images
    assert get_drop_path_rates(model.backbone) == [0.1] * 6
    assert model.backbone.patch_embed.projection.in_channels == 1
    runner.train()
    assert runner.iter == 2  # 256 images / batch 128
    hub = runner.message_hub
    assert 'train/loss_distill' in hub.log_scalars  # the cosub loss ran
    assert 0.0 <= hub.get_scalar('val/accuracy/top1').current() <= 100.0
    # backbone export: backbone.* keys equal to the trained classifier's
    backbone = safe_load(osp.join(work_dir, 'backbone.pth'))['state_dict']
    state = model.state_dict()
    assert backbone and all(k.startswith('backbone.') for k in backbone)
    assert set(backbone) == {k for k in state if k.startswith('backbone.')}
    for key, value in backbone.items():
        torch.testing.assert_close(value, state[key])


def test_baseline_twin_differs_only_by_the_classifier():
    cosub = Config.fromfile(osp.join(REPO, COSUB_CFG))
    base = Config.fromfile(osp.join(REPO, BASE_CFG))
    assert cosub.model.type == 'cosub_mm.CosubClassifier'
    assert base.model.type == 'ImageClassifier'
    assert base.model.backbone == cosub.model.backbone
    assert base.model.head == cosub.model.head
    assert 'cosub_loss' not in base.model
    for key in ('train_dataloader', 'val_dataloader', 'optim_wrapper',
                'param_scheduler', 'train_cfg', 'data_preprocessor'):
        assert base[key] == cosub[key], key
    from mmpretrain.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    model = MODELS.build(base.model)
    # the same uniform stochastic depth as the cosub twin, not linear
    assert get_drop_path_rates(model.backbone) == [0.1] * 6


def test_missing_fashion_mnist_names_the_fix(tmp_path):
    with pytest.raises(SystemExit, match='make setup') as err:
        check_fashion_mnist(str(tmp_path))
    assert 'apt-get install dataset-fashion-mnist' in str(err.value)
    assert str(tmp_path) in str(err.value)
