"""tools/train.py --amp / --amp-dtype set mmengine's AmpOptimWrapper.

AmpOptimWrapper itself needs a GPU, so these tests check the config that
``merge_args`` hands to the Runner, against mmengine's own class.
"""
import inspect
import os.path as osp
import sys

import pytest
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper

from conftest import REPO, TEST_CONFIGS, load_tool

TOOL = osp.join(REPO, 'tools', 'train.py')
CLS_CFG = osp.join(TEST_CONFIGS, 'tiny_cls.py')


@pytest.fixture(scope='module')
def train_tool():
    return load_tool(TOOL)


def _merged(train_tool, monkeypatch, tmp_path, *flags: str,
            body: str = '') -> Config:
    cfg_path = CLS_CFG
    if body:
        cfg_path = tmp_path / 'child.py'
        cfg_path.write_text(f'_base_ = {CLS_CFG!r}\n{body}')
    monkeypatch.setattr(sys, 'argv', [
        TOOL, str(cfg_path), '--work-dir', str(tmp_path / 'work'), *flags])
    args = train_tool.parse_args()
    return train_tool.merge_args(Config.fromfile(str(cfg_path)), args)


def test_without_amp_the_optim_wrapper_is_unchanged(train_tool, monkeypatch,
                                                    tmp_path):
    cfg = _merged(train_tool, monkeypatch, tmp_path)
    assert cfg.optim_wrapper.get('type', 'OptimWrapper') == 'OptimWrapper'
    assert 'dtype' not in cfg.optim_wrapper


@pytest.mark.parametrize('flags, dtype, loss_scale', [
    # the authors' setting: fp16 autocast + a dynamic loss scaler (deit
    # engine.py torch.cuda.amp.autocast, main.py NativeScaler)
    (['--amp'], 'float16', 'dynamic'),
    (['--amp', '--amp-dtype', 'fp16'], 'float16', 'dynamic'),
    (['--amp', '--amp-dtype', 'bf16'], 'bfloat16', 1.0),
    (['--amp-dtype', 'bf16'], 'bfloat16', 1.0),  # implies --amp
])
def test_amp_flags_set_amp_optim_wrapper_dtype_and_loss_scale(
        flags, dtype, loss_scale, train_tool, monkeypatch, tmp_path):
    cfg = _merged(train_tool, monkeypatch, tmp_path, *flags)
    wrapper = cfg.optim_wrapper
    assert wrapper.type == 'AmpOptimWrapper'
    assert wrapper.dtype == dtype and wrapper.loss_scale == loss_scale
    # what mmengine's AmpOptimWrapper accepts
    assert wrapper.dtype in AmpOptimWrapper.valid_dtypes
    params = inspect.signature(AmpOptimWrapper.__init__).parameters
    assert {'dtype', 'loss_scale'} <= set(params)
    # the optimizer settings are kept
    base = Config.fromfile(CLS_CFG).optim_wrapper
    assert wrapper.optimizer == base.optimizer


def test_amp_dtype_overrides_a_config_that_already_uses_amp(
        train_tool, monkeypatch, tmp_path):
    body = ("optim_wrapper = dict(type='AmpOptimWrapper', "
            "loss_scale=512.0)\n")
    cfg = _merged(train_tool, monkeypatch, tmp_path, '--amp', body=body)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert 'dtype' not in cfg.optim_wrapper  # --amp alone leaves it as is
    cfg = _merged(train_tool, monkeypatch, tmp_path, '--amp-dtype', 'bf16',
                  body=body)
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    assert cfg.optim_wrapper.loss_scale == 512.0  # the config's own wins


def test_amp_refuses_another_optim_wrapper_type(train_tool, monkeypatch,
                                               tmp_path):
    body = "optim_wrapper = dict(type='ApexOptimWrapper')\n"
    with pytest.raises(ValueError, match='--amp needs optim_wrapper.type'):
        _merged(train_tool, monkeypatch, tmp_path, '--amp', body=body)


def test_amp_dtype_choices_are_checked(train_tool, monkeypatch, tmp_path):
    with pytest.raises(SystemExit):
        _merged(train_tool, monkeypatch, tmp_path, '--amp-dtype', 'fp8')
