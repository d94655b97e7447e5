"""Unit checks of ExactResumeHook (the kill/resume scenario is in
tests/test_reliability/test_resume_exact_and_atomic.py)."""
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cosub_mm.fileio import safe_load
from cosub_mm.engine.hooks import ExactResumeHook
from cosub_mm.engine.hooks.exact_resume_hook import skip_batches_at_sampler


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


class _Counting(torch.utils.data.Dataset):
    """Returns its index; counts the samples loaded."""

    def __init__(self, size: int) -> None:
        self.size, self.loads = size, 0

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, idx: int) -> int:
        self.loads += 1
        return idx


def _loop_iterator(sampler_type: str, seed: int = 7, workers: int = 0):
    from mmengine.dataset import DefaultSampler, InfiniteSampler
    from mmengine.runner.loops import _InfiniteDataloaderIterator
    from mmpretrain.datasets.samplers import RepeatAugSampler
    dataset = _Counting(10)
    sampler = dict(
        infinite=lambda: InfiniteSampler(dataset, shuffle=True, seed=seed),
        default=lambda: DefaultSampler(dataset, shuffle=True, seed=seed),
        repeat_aug=lambda: RepeatAugSampler(dataset, shuffle=True,
                                            num_repeats=3, seed=seed),
    )[sampler_type]()
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=3, sampler=sampler, num_workers=workers,
        collate_fn=list, drop_last=sampler_type == 'default')
    return _InfiniteDataloaderIterator(loader), dataset


@pytest.mark.parametrize('sampler_type', ['infinite', 'default',
                                          'repeat_aug'])
@pytest.mark.parametrize('skip', [0, 2, 3, 7])
def test_sampler_skip_lands_where_iterating_does_and_loads_nothing(
        sampler_type, skip, monkeypatch):
    """The batches after a sampler-level skip are those an uninterrupted
    iteration sees next, across epoch ends (3 batches per epoch here,
    DefaultSampler dropping the last partial one), with no sample loaded
    during the skip."""
    from mmengine.runner import loops
    monkeypatch.setattr(loops.time, 'sleep', lambda s: None)
    ref, _ = _loop_iterator(sampler_type)
    expected = [next(ref) for _ in range(skip + 5)][skip:]
    it, dataset = _loop_iterator(sampler_type)
    assert skip_batches_at_sampler(it, skip)
    assert dataset.loads == 0
    assert [next(it) for _ in range(5)] == expected
    assert dataset.loads == sum(len(batch) for batch in expected)


def test_a_loader_with_workers_is_not_skipped():
    it, dataset = _loop_iterator('infinite', workers=1)
    assert not skip_batches_at_sampler(it, 4)
    assert next(it) == _loop_iterator('infinite')[0].__next__()


def test_a_second_hook_is_refused_naming_the_runtime_one():
    """Two hooks would both skip the trained batches on resume."""
    runner = SimpleNamespace(hooks=[ExactResumeHook(), ExactResumeHook()])
    with pytest.raises(ValueError, match='registered 2 times.*'
                       'default_hooks.exact_resume'):
        runner.hooks[0].before_run(runner)
    ExactResumeHook().before_run(SimpleNamespace(hooks=[]))  # one: fine
