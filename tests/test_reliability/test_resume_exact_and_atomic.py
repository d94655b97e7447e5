"""Exact resume after SIGKILL, and atomic checkpoints.

Each test kills a real ``tools/train.py`` subprocess with SIGKILL, resumes it
with ``--resume`` and compares the final weights with those of an
uninterrupted run of the same length (6 iterations, checkpoints every 2).
"""
import os
import os.path as osp
import shutil

import pytest

from reliability_helpers import (COSUB_CFG, assert_bitwise_equal,
                                 fault_env, run_tool, train, train_and_kill,
                                 train_args, weights)
from conftest import make_cls_dataset


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> str:
    """12 training images: 3 iterations per epoch at batch 4."""
    return make_cls_dataset(
        str(tmp_path_factory.mktemp('resume_data')), per_class=4)


@pytest.fixture(scope='module')
def reference(tmp_path_factory, data_root) -> dict:
    """Final weights of an uninterrupted run of 6 iterations."""
    work_dir = str(tmp_path_factory.mktemp('reference'))
    train(work_dir, data_root)
    return weights(osp.join(work_dir, 'iter_6.pth'))


@pytest.fixture(scope='module')
def killed_after_iter5(tmp_path_factory, data_root) -> str:
    """A work_dir whose run was SIGKILLed after iteration 5 (last
    checkpoint: iteration 4)."""
    work_dir = str(tmp_path_factory.mktemp('killed'))
    marker = osp.join(work_dir, 'paused')
    status = train_and_kill(
        work_dir, data_root, marker, FAULT_PAUSE_AFTER_ITER='5')
    assert status == -9
    assert not osp.exists(osp.join(work_dir, 'iter_6.pth'))
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read() == osp.join(work_dir, 'iter_4.pth')
    return work_dir


def _copy_run(work_dir: str, to: str) -> str:
    shutil.copytree(work_dir, to)
    # the pointer names the original folder; resume from the copied file
    with open(osp.join(to, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(to, 'iter_4.pth'))
    return to


def test_resume_after_sigkill_is_bitwise_exact(killed_after_iter5, data_root,
                                               reference, tmp_path):
    work_dir = _copy_run(killed_after_iter5, str(tmp_path / 'run'))
    proc = train(work_dir, data_root, resume=True)
    assert 'resumed epoch: 0, iter: 4' in proc.stdout + proc.stderr
    assert_bitwise_equal(weights(osp.join(work_dir, 'iter_6.pth')),
                         reference)


def test_mmengine_resume_alone_is_not_exact(killed_after_iter5, data_root,
                                            reference, tmp_path):
    """Without ExactResumeHook the RNGs restart from the seed: the drop-path
    masks and Mixup/CutMix draws after the resume differ."""
    work_dir = _copy_run(killed_after_iter5, str(tmp_path / 'run'))
    args = train_args(work_dir, data_root)
    args[1] = COSUB_CFG.replace('.py', '_plain_resume.py')
    args.insert(2, '--resume')
    run_tool(args, env=fault_env())
    resumed = weights(osp.join(work_dir, 'iter_6.pth'))
    assert resumed.keys() == reference.keys()
    diff = max((resumed[k] - reference[k]).abs().max() for k in reference)
    assert diff > 1e-5


def test_checkpoint_killed_mid_save_leaves_previous_one_resumable(
        data_root, reference, tmp_path):
    """SIGKILL while iteration 4's checkpoint is half written (a slow
    writer): iter_4.pth never appears, last_checkpoint still names
    iter_2.pth, and resuming from it reproduces the uninterrupted run."""
    work_dir = str(tmp_path)
    marker = osp.join(work_dir, 'half_written')
    status = train_and_kill(
        work_dir, data_root, marker, FAULT_SLOW_SAVE_ITER='4')
    assert status == -9
    files = os.listdir(work_dir)
    assert 'iter_4.pth' not in files
    partial = [f for f in files if f.startswith('.iter_4.pth.')]
    assert len(partial) == 1  # the half-written temporary file
    assert 0 < os.path.getsize(osp.join(work_dir, partial[0])) < \
        os.path.getsize(osp.join(work_dir, 'iter_2.pth'))
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read() == osp.join(work_dir, 'iter_2.pth')

    train(work_dir, data_root, resume=True)
    files = os.listdir(work_dir)
    assert not [f for f in files if f.endswith('.tmp')]  # cleaned up
    assert_bitwise_equal(weights(osp.join(work_dir, 'iter_6.pth')),
                         reference)
