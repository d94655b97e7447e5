"""The demo configs (configs/demo/) on real Fashion-MNIST.

Both configs train two iterations of the real demo ViT on a 256-image
subset; the baseline twin differs only by the classifier; the schedule keeps
its warmup a fraction of the run when the run is shortened.
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

import cosub_mm  # noqa: F401
from conftest import REPO
from cosub_mm.fileio import safe_load
from cosub_mm.models.drop_path import get_drop_path_rates
from cosub_mm.utils import scale_schedule

COSUB_CFG = 'configs/demo/cosub_vit-6l-96d-p7_1xb256-adamw-700i_fashion-mnist.py'
BASE_CFG = 'configs/demo/vit-6l-96d-p7_1xb256-adamw-700i_fashion-mnist.py'


def _cfg(path: str, work_dir: str, name: str, length: int) -> Config:
    cfg = Config.fromfile(osp.join(REPO, path))
    root = osp.join(REPO, 'data', 'fashion_mnist')
    cfg.merge_from_dict({
        'train_dataloader.dataset.indices': 256,
        'train_dataloader.batch_size': 128,
        'val_dataloader.dataset.indices': 100,
        'train_dataloader.dataset.data_root': root,
        'val_dataloader.dataset.data_root': root,
    })
    scale_schedule(cfg, length)
    cfg.work_dir = work_dir
    cfg.experiment_name = f'test_demo_{name}_{osp.basename(work_dir)}'
    return cfg


@pytest.mark.parametrize('path', [COSUB_CFG, BASE_CFG])
def test_demo_config_trains_with_uniform_stochastic_depth(tmp_path, path):
    work_dir = str(tmp_path / 'run')
    runner = Runner.from_cfg(_cfg(path, work_dir, osp.basename(path)[:5], 2))
    model = runner.model
    cosub = path == COSUB_CFG
    assert type(model).__name__ == ('CosubClassifier' if cosub else
                                    'ImageClassifier')
    # the real demo ViT: 6 blocks, width 96, patch 7 on 1-channel images;
    # mmpretrain builds linear rates, the config's hook makes them uniform
    assert model.backbone.patch_embed.projection.in_channels == 1
    assert model.backbone.patch_embed.projection.kernel_size == (7, 7)
    assert get_drop_path_rates(model.backbone)[0] == 0.0
    runner.train()
    assert get_drop_path_rates(model.backbone) == [0.1] * 6
    assert runner.iter == 2
    hub = runner.message_hub
    assert ('train/loss_distill' in hub.log_scalars) == cosub
    assert 0.0 <= hub.get_scalar('val/accuracy/top1').current() <= 100.0
    # backbone export: backbone.* keys equal to the trained classifier's
    backbone = safe_load(osp.join(work_dir, 'backbone.pth'))['state_dict']
    state = model.state_dict()
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
                'param_scheduler', 'train_cfg', 'data_preprocessor',
                'custom_hooks', 'default_hooks'):
        assert base[key] == cosub[key], key


@pytest.mark.parametrize('length', [700, 350, 20])
def test_shortened_runs_keep_warmup_a_tenth_of_the_run(length):
    cfg = Config.fromfile(osp.join(REPO, COSUB_CFG))
    scale_schedule(cfg, length)
    warmup, cosine = cfg.param_scheduler
    assert cfg.train_cfg.max_iters == length
    assert warmup.end == cosine.begin == round(length / 10)
    assert cosine.end == length


def test_cosub_demo_trains_with_mmengines_compile_option(tmp_path):
    """``compile = True`` in a config (mmengine compiles ``train_step``);
    the eager backend keeps the test to Dynamo's tracing, which is where
    the efficient drop path could break or recompile."""
    cfg = _cfg(COSUB_CFG, str(tmp_path / 'run'), 'compile', 2)
    cfg.compile = dict(backend='eager')
    cfg.model.backbone.arch.num_layers = 2  # tracing time grows with depth
    cfg.custom_hooks = [h for h in cfg.custom_hooks
                        if 'Export' not in h['type']]
    torch._dynamo.reset()
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    assert getattr(runner.model.train_step, '_torchdynamo_orig_callable',
                   None) is not None  # it was compiled
    hub = runner.message_hub
    # the step's submodel plan is logged: distinct submodels of 256 rows
    submodels = hub.get_scalar('train/submodels').current()
    assert 1 < submodels <= 16  # 2 layers, 4 branches: at most 2^4
    assert 0.8 < hub.get_scalar('train/depth').current() < 1.0
