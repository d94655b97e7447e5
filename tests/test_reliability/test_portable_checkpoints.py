"""Training checkpoints load anywhere (issue 17).

A tiny classification run (with ExactResumeHook's RNG states) and a tiny
UperNet run train two iterations in this process; their ``iter_2.pth`` is
then read with plain ``torch.load`` in a process that cannot import cosub_mm
nor mmengine, and must hold the trained model's weights bit for bit. Through
mmengine's loader (``--resume``) the message hub comes back as the run had
it. Resuming such a checkpoint exactly: test_resume_exact_and_atomic.py.
"""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner
from mmengine.runner.checkpoint import CheckpointLoader

import cosub_mm  # noqa: F401
from conftest import TEST_CONFIGS, make_cls_dataset
from reliability_helpers import (COSUB_CFG, assert_bitwise_equal,
                                 load_anywhere)

CONFIGS = dict(cls=COSUB_CFG, seg=osp.join(TEST_CONFIGS, 'tiny_upernet.py'))


def _train_two_iterations(kind: str, data_root: str, work_dir: str) -> Runner:
    cfg = Config.fromfile(CONFIGS[kind])
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = data_root
    cfg.train_cfg.max_iters = 2
    cfg.train_cfg.val_interval = 2
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=2, by_epoch=False)
    cfg.work_dir = work_dir
    cfg.experiment_name = f'test_portable_{kind}_{osp.basename(work_dir)}'
    import mmengine.config.config as config_module
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:  # skip yapf (~2 s), not tested
        mp.setattr(config_module, 'FormatCode',
                   lambda text, **kwargs: (text, None))
        runner = Runner.from_cfg(cfg)
        runner.train()
    torch.set_num_threads(threads)
    return runner


@pytest.mark.parametrize('kind', ['cls', 'seg'])
def test_training_checkpoint_loads_with_plain_torch_anywhere(
        kind, seg_data_root, tmp_path):
    data_root = seg_data_root if kind == 'seg' else make_cls_dataset(
        str(tmp_path / 'data'), per_class=4)
    runner = _train_two_iterations(kind, data_root, str(tmp_path / 'run'))
    path = str(tmp_path / 'run' / 'iter_2.pth')

    state, summary = load_anywhere(path, str(tmp_path / 'state.pth'))
    assert summary['modules'] == []  # neither cosub_mm nor mmengine
    assert {'meta', 'state_dict', 'message_hub', 'optimizer',
            'param_schedulers'} <= set(summary['keys'])
    assert {'cfg', 'dataset_meta', 'seed', 'epoch', 'iter'} <= set(
        summary['meta'])
    assert summary['rng_state'] == (
        ['numpy', 'python', 'torch'] if kind == 'cls' else [])
    assert_bitwise_equal(state, runner.model.state_dict())

    # mmengine's loader rebuilds the message hub as the run had it
    hub = CheckpointLoader.load_checkpoint(path)['message_hub']
    live = runner.message_hub.log_scalars
    for key in [k for k in live if k.startswith('train/')]:
        saved = hub['log_scalars'][key]
        assert type(saved) is HistoryBuffer, key
        for attr in ('_log_history', '_count_history'):
            a, b = getattr(saved, attr), getattr(live[key], attr)
            assert a.dtype == b.dtype and np.array_equal(a, b), key
    assert type(hub['runtime_info']['eta']) is np.float64
