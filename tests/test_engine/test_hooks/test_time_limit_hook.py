"""TimeLimitHook ends a run at a checkpoint that --resume continues."""
import os
import os.path as osp
import sys
from types import SimpleNamespace

import pytest
from mmengine.logging import MessageHub
from mmengine.runner import IterBasedTrainLoop

from conftest import REPO, make_cls_dataset
from cosub_mm.engine.hooks import TimeLimitHook

sys.path.insert(0, osp.join(REPO, 'tests', 'test_reliability'))
from reliability_helpers import train  # noqa: E402


def _runner(name: str, max_iters: int = 6, val_interval: int = 2):
    loop = IterBasedTrainLoop.__new__(IterBasedTrainLoop)
    loop.val_begin, loop.val_interval, loop.stop_training = 1, \
        val_interval, False
    logs = []
    return SimpleNamespace(
        iter=0, max_iters=max_iters, train_loop=loop, val_loop=object(),
        message_hub=MessageHub.get_instance(name),
        logger=SimpleNamespace(info=logs.append), logs=logs)


def _step(hook, runner, step: int, saved: bool) -> bool:
    """Finish iteration ``step`` (saving its checkpoint if ``saved``)."""
    runner.iter = step - 1
    if saved:
        runner.message_hub.update_info('last_ckpt', f'iter_{step}.pth')
    hook.after_train_iter(runner, step - 1)
    return runner.train_loop.stop_training


def test_stops_after_the_first_checkpoint_of_a_step_that_does_not_validate():
    runner = _runner('time_limit_stop')
    runner.message_hub.update_info('last_ckpt', 'iter_0.pth')  # resumed
    hook = TimeLimitHook(hours=0)
    hook.before_train(runner)
    assert not _step(hook, runner, 1, saved=False)  # no checkpoint
    assert not _step(hook, runner, 2, saved=True)  # validates after saving
    assert not hook.stopped
    assert _step(hook, runner, 3, saved=True)
    assert hook.stopped and 'iter_3.pth (step 3)' in runner.logs[0]


def test_waits_for_its_hours_and_never_stops_the_last_step():
    runner = _runner('time_limit_wait', max_iters=3, val_interval=10)
    hook = TimeLimitHook(hours=1)
    hook.before_train(runner)
    assert not _step(hook, runner, 1, saved=True)
    hook.deadline = 0.0  # the hour is over
    assert not _step(hook, runner, 3, saved=True)  # the run's end
    assert not hook.stopped
    epoch_loop = SimpleNamespace(stop_training=False, val_begin=1,
                                 val_interval=2)
    runner = SimpleNamespace(
        epoch=0, max_epochs=5, train_loop=epoch_loop, val_loop=None,
        message_hub=MessageHub.get_instance('time_limit_epoch'),
        logger=SimpleNamespace(info=lambda m: None))
    hook = TimeLimitHook(hours=0)
    hook.before_train(runner)
    runner.message_hub.update_info('last_ckpt', 'epoch_1.pth')
    hook.after_train_iter(runner, 0)  # iterations of an epoch loop: ignored
    assert not epoch_loop.stop_training
    hook.after_train_epoch(runner)  # no validation loop: stops at epoch 1
    assert epoch_loop.stop_training


def test_negative_hours_are_refused():
    with pytest.raises(ValueError, match='hours must be >= 0, got -1'):
        TimeLimitHook(hours=-1)


def test_train_py_time_limit_ends_at_a_checkpoint_and_tests_at_the_end(
        tmp_path):
    """The tiny cosub run (6 iterations, checkpoints every 2, validation at
    4): a limit of 0 h stops it after iteration 2 without testing; resumed
    under the same limit it passes the validating checkpoint 4 and ends."""
    data_root = make_cls_dataset(str(tmp_path / 'data'), per_class=4)
    work_dir = str(tmp_path / 'run')
    out = train(work_dir, data_root, extra=['--time-limit', '0', '--test'])
    assert 'TimeLimitHook: 0 h passed; stopping after the checkpoint' in \
        out.stdout + out.stderr
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read() == osp.join(work_dir, 'iter_2.pth')
    assert not osp.exists(osp.join(work_dir, 'test_metrics.json'))
    train(work_dir, data_root, resume=True,
          extra=['--time-limit', '0', '--test'])
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read() == osp.join(work_dir, 'iter_6.pth')
    assert osp.isfile(osp.join(work_dir, 'test_metrics.json'))
    assert sorted(f for f in os.listdir(work_dir) if f.endswith('.pth'))[
        -1] == 'iter_6.pth'
