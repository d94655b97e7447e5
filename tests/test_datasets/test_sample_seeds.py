"""Per-sample seeds: the sampler's (index, seed) stream, its skip, and the
dataset wrapper's seeded, caller-preserving loads."""
import itertools
import pickle
import random

import numpy as np
import pytest
import torch
from mmengine.dataset import DefaultSampler, InfiniteSampler

from cosub_mm.datasets import (SampleSeedDataset, SampleSeedSampler,
                               SeededIndex, sample_seed)


class _Draws(torch.utils.data.Dataset):
    """A sample is its index and one draw of each global RNG."""

    def __init__(self, size: int = 10) -> None:
        self.size = size
        self.metainfo = dict(classes=('a', 'b'))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, idx: int) -> tuple:
        return (type(idx).__name__, int(idx), random.random(),
                float(np.random.rand()), float(torch.rand(())))


def _global_draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def _sampler(kind: str, dataset, seed: int = 5) -> SampleSeedSampler:
    inner = dict(
        default=dict(type='DefaultSampler', shuffle=True),
        infinite=dict(type='InfiniteSampler', shuffle=True),
        repeat_aug=dict(type='mmpretrain.RepeatAugSampler', shuffle=True,
                        num_repeats=3))[kind]
    return SampleSeedSampler(dataset, sampler=inner, seed=seed)


def test_sample_seed_is_a_fixed_function_of_its_place():
    seeds = {sample_seed(5, r, e, p) for r in range(2) for e in range(3)
             for p in range(50)}
    assert len(seeds) == 2 * 3 * 50  # no two places share a seed
    assert all(0 <= s < 2**32 for s in seeds)
    # an independent reference: numpy's SeedSequence of the same words
    assert sample_seed(5, 1, 2, 3) == int(
        np.random.SeedSequence([5, 1, 2, 3]).generate_state(1)[0])
    assert sample_seed(-1, 0, 0, 0) == int(
        np.random.SeedSequence([2**64 - 1, 0, 0, 0]).generate_state(1)[0])


def test_sampler_keeps_the_wrapped_order_and_seeds_each_place():
    dataset = _Draws(10)
    sampler = _sampler('default', dataset)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        ref = DefaultSampler(dataset, shuffle=True, seed=5)
        ref.set_epoch(epoch)
        got = list(sampler)
        assert [int(i) for i in got] == list(ref)
        assert all(isinstance(i, SeededIndex) for i in got)
        assert [i.seed for i in got] == [
            sample_seed(5, 0, epoch, p) for p in range(10)]
    assert len(sampler) == 10


@pytest.mark.parametrize('kind', ['default', 'infinite', 'repeat_aug'])
@pytest.mark.parametrize('skip', [0, 4, 9])
def test_skip_lands_on_the_place_iterating_reaches(kind, skip):
    dataset = _Draws(10)

    def stream(sampler, n):
        return [(int(i), i.seed) for i in itertools.islice(sampler, n)]

    expected = stream(_sampler(kind, dataset), skip + 12)[skip:]
    sampler = _sampler(kind, dataset)
    if kind == 'infinite':
        stream(sampler, 7)  # a stream already drawn from is restarted
    sampler.skip(skip)
    got = stream(sampler, 12)
    if kind != 'infinite':  # one epoch: what is left of it
        expected = expected[:len(sampler) - skip]
    assert got == expected
    if kind != 'infinite':  # the skip applies to one iteration only
        assert stream(sampler, 3) == stream(_sampler(kind, dataset), 3)


def test_infinite_stream_positions_continue_across_iterations():
    dataset = _Draws(4)
    one = _sampler('infinite', dataset)
    whole = [(int(i), i.seed) for i in itertools.islice(one, 10)]
    two = _sampler('infinite', dataset)
    parts = [(int(i), i.seed) for i in itertools.islice(two, 3)]
    parts += [(int(i), i.seed) for i in itertools.islice(two, 7)]
    assert parts == whole
    assert isinstance(two.sampler, InfiniteSampler) and two.infinite


def test_seeded_load_ignores_and_keeps_the_callers_rngs():
    dataset = SampleSeedDataset(_Draws())
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    expected_after = _global_draws()
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    first = dataset[SeededIndex(3, seed=11)]
    assert _global_draws() == expected_after  # the caller's RNGs untouched
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    assert dataset[SeededIndex(3, seed=11)] == first  # whatever drew before
    assert first[:2] == ('int', 3)  # the wrapped dataset gets a plain int
    random.seed(11), np.random.seed(11)
    torch.random.default_generator.manual_seed(11)
    assert first[2:] == _global_draws()  # drawn from the sample's seed
    assert dataset[SeededIndex(3, seed=12)] != first


def test_unseeded_index_loads_as_the_wrapped_dataset():
    dataset = SampleSeedDataset(_Draws())
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    got = dataset[3]
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    assert got == _Draws()[3]
    assert dataset.metainfo == dict(classes=('a', 'b'))
    assert len(dataset) == 10


def test_seeded_index_survives_the_worker_queue():
    idx = pickle.loads(pickle.dumps(SeededIndex(7, seed=99)))
    assert (type(idx), int(idx), idx.seed) == (SeededIndex, 7, 99)
    wrapped = pickle.loads(pickle.dumps(SampleSeedDataset(_Draws(3))))
    assert len(wrapped) == 3


def test_dataset_config_keys_beside_dataset_override_it(tmp_path):
    import cosub_mm  # noqa: F401 (registries)
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    (tmp_path / 'a').mkdir()
    (tmp_path / 'a' / 'x.png').write_bytes(b'')
    dataset = SampleSeedDataset(
        dict(type='CustomDataset', data_root='/nowhere', data_prefix='',
             pipeline=[]), data_root=str(tmp_path))
    assert dataset.data_root == str(tmp_path)
    with pytest.raises(TypeError, match=r"\['data_root'\].*_Draws"):
        SampleSeedDataset(_Draws(), data_root='x')


# ------------------------------------------- a loader with worker processes
class _Logged(torch.utils.data.Dataset):
    """A sample is its index and a numpy and a torch draw; the numpy draw
    (a function of the sample's seed) is appended to a file, which worker
    processes share."""

    def __init__(self, size: int, log: str) -> None:
        self.size, self.log = size, log

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, idx: int) -> tuple:
        draw = float(np.random.rand())
        with open(self.log, 'a') as f:
            f.write(f'{draw!r}\n')
        return (int(idx), draw, float(torch.rand(())))


def _seeded_loop_iterator(kind: str, log: str, workers: int,
                          persistent: bool = False):
    from mmengine.runner.loops import _InfiniteDataloaderIterator
    base = _Logged(10, log)
    loader = torch.utils.data.DataLoader(
        SampleSeedDataset(base), batch_size=3, sampler=_sampler(kind, base),
        num_workers=workers, persistent_workers=persistent,
        collate_fn=list, drop_last=kind == 'default')
    return _InfiniteDataloaderIterator(loader)


def _loaded(log: str) -> list:
    try:
        with open(log) as f:
            return [float(line) for line in f]
    except FileNotFoundError:
        return []


@pytest.mark.parametrize('kind,persistent', [('default', False),
                                             ('default', True),
                                             ('infinite', False),
                                             ('infinite', True),
                                             ('repeat_aug', True)])
@pytest.mark.parametrize('skip', [3, 7])
def test_workers_resume_at_the_sampler_with_the_same_samples(
        kind, persistent, skip, tmp_path, monkeypatch):
    """With 2 workers the batches after the skip equal those of an
    uninterrupted iteration without workers (3 batches per epoch for
    ``default``: ``skip=3`` is an epoch end); of the skipped samples none
    is loaded beyond the prefetch the loop's first iterator makes when it
    is created (prefetch_factor x workers = 4 batches, whatever the skip).
    """
    from mmengine.runner import loops
    from cosub_mm.engine.hooks.exact_resume_hook import \
        skip_batches_at_sampler
    monkeypatch.setattr(loops.time, 'sleep', lambda s: None)
    ref = _seeded_loop_iterator(kind, str(tmp_path / 'ref'), workers=0)
    batches = [next(ref) for _ in range(skip + 4)]
    log = str(tmp_path / 'run')
    it = _seeded_loop_iterator(kind, log, workers=2, persistent=persistent)
    assert skip_batches_at_sampler(it, skip)
    assert [next(it) for _ in range(4)] == batches[skip:]
    trained = {b[1] for batch in batches[:skip] for b in batch}
    first_prefetch = {b[1] for batch in batches[:4] for b in batch}
    replayed = {d for d in _loaded(log) if d in trained}
    assert replayed <= first_prefetch
