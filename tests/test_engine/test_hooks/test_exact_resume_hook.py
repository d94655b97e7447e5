"""Unit checks of ExactResumeHook (the kill/resume scenario is in
tests/test_reliability/test_resume_exact_and_atomic.py)."""
import random
from types import SimpleNamespace

import numpy as np
import torch

from cosub_mm.fileio import safe_load
from cosub_mm.engine.hooks import ExactResumeHook


def _draw() -> tuple:
    return (random.random(), float(np.random.rand()),
            float(np.random.randn()), float(torch.rand(())))


def _runner(iter_: int, batches) -> SimpleNamespace:
    loop = SimpleNamespace(iter=iter_, dataloader_iterator=iter(batches))
    return SimpleNamespace(train_loop=loop)


def test_rng_state_survives_weights_only_checkpoint(tmp_path):
    hook = ExactResumeHook()
    np.random.randn()  # numpy caches a gaussian: part of the state
    checkpoint = {'meta': {}}
    hook.before_save_checkpoint(None, checkpoint)
    expected = _draw()
    path = str(tmp_path / 'ckpt.pth')
    torch.save(checkpoint, path)
    loaded = safe_load(path)  # still weights-only loadable

    random.seed(123), np.random.seed(123), torch.manual_seed(123)
    hook.after_load_checkpoint(None, loaded)
    runner = _runner(3, ['b0', 'b1', 'b2', 'b3'])
    hook.before_train(runner)
    it = runner.train_loop.dataloader_iterator
    replayed = [next(it) for _ in range(3)]  # the loop's replay
    np.random.rand(), torch.rand(3)  # draws of the replayed pipeline
    assert replayed == ['b0', 'b1', 'b2']
    assert next(it) == 'b3'  # restored right before the first new batch
    assert _draw() == expected


def test_load_from_does_not_restore_rng(tmp_path):
    """``load_from`` also calls after_load_checkpoint: a new run (iter 0)
    keeps its own seed."""
    hook = ExactResumeHook()
    checkpoint = {'meta': {}}
    hook.before_save_checkpoint(None, checkpoint)
    saved = _draw()
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    hook.after_load_checkpoint(None, checkpoint)
    runner = _runner(0, ['b0'])
    hook.before_train(runner)
    assert next(runner.train_loop.dataloader_iterator) == 'b0'
    assert _draw() != saved


def test_validation_does_not_shift_training_draws():
    hook = ExactResumeHook()
    torch.manual_seed(0)
    without_val = float(torch.rand(()))
    torch.manual_seed(0)
    hook.before_val(None)
    torch.rand(5)  # e.g. a val dataloader drawing its base seed
    hook.after_val(None)
    assert float(torch.rand(())) == without_val
