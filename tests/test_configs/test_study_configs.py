"""The study configs (configs/study/): twins that differ only by the
classifier, a real training step of each on Fashion-MNIST."""
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

import cosub_mm  # noqa: F401
from conftest import REPO
from cosub_mm.models.drop_path import get_drop_path_rates

COSUB_CFG = 'configs/study/cosub_vit-6l-64d-p7_1xb128-adamw_fashion-mnist.py'
BASE_CFG = 'configs/study/vit-6l-64d-p7_1xb128-adamw_fashion-mnist.py'


def test_study_twins_differ_only_by_the_classifier():
    cosub = Config.fromfile(osp.join(REPO, COSUB_CFG))
    base = Config.fromfile(osp.join(REPO, BASE_CFG))
    assert cosub.model.type == 'cosub_mm.CosubClassifier'
    assert base.model.type == 'ImageClassifier'
    assert base.model.backbone == cosub.model.backbone
    assert base.model.head == cosub.model.head
    assert cosub.model.backbone.arch == dict(
        embed_dims=64, num_layers=6, num_heads=2, feedforward_channels=128)
    assert cosub.model.head.in_channels == 64
    for key in ('train_dataloader', 'val_dataloader', 'optim_wrapper',
                'param_scheduler', 'train_cfg', 'data_preprocessor',
                'custom_hooks', 'default_hooks'):
        assert base[key] == cosub[key], key
    assert cosub.train_dataloader.batch_size == 128


@pytest.mark.parametrize('path', [COSUB_CFG, BASE_CFG])
def test_study_config_trains(tmp_path, path):
    cfg = Config.fromfile(osp.join(REPO, path))
    root = osp.join(REPO, 'data', 'fashion_mnist')
    cfg.merge_from_dict({
        'train_dataloader.dataset.indices': 256,
        'val_dataloader.dataset.indices': 100,
        'train_dataloader.dataset.data_root': root,
        'val_dataloader.dataset.data_root': root,
        'train_cfg.max_iters': 2,
        'train_cfg.val_interval': 2,
    })
    cfg.work_dir = str(tmp_path)
    cfg.experiment_name = f'test_study_{osp.basename(path)[:5]}'
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    assert get_drop_path_rates(runner.model.backbone) == [0.1] * 6
    hub = runner.message_hub
    assert ('train/loss_distill' in hub.log_scalars) == (path == COSUB_CFG)
