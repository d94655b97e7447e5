"""Per-sample seeds: each sample's augmentation randomness comes from (seed,
rank, epoch, position) instead of a worker's running RNG.

A data loader worker seeds its RNGs once, when it starts, and every sample
it augments draws from where the previous one left them. What a sample gets
then depends on which worker loaded it and on everything that worker loaded
before, so a resumed run can only reproduce the interrupted one by
re-loading every sample already trained (mmengine#1520). With
:class:`SampleSeedSampler` and :class:`SampleSeedDataset` each sample is
augmented from a seed derived from its place in the sampler's stream: the
augmentation no longer depends on the number of workers, and skipping
samples at the sampler (:meth:`SampleSeedSampler.skip`) changes nothing
downstream. ``ExactResumeHook`` uses that to resume with workers, loading
none of the trained samples.

Example:
    >>> train_dataloader = dict(
    ...     num_workers=8, persistent_workers=True,
    ...     sampler=dict(type='cosub_mm.SampleSeedSampler',
    ...                  sampler=dict(type='DefaultSampler', shuffle=True)),
    ...     dataset=dict(type='cosub_mm.SampleSeedDataset',
    ...                  dataset=dict(type='ImageNet', ...)))
"""
import collections
import itertools
import random
from typing import Any, Iterator, Optional, Union

import numpy as np
import torch
from mmengine.dataset import InfiniteSampler
from mmengine.dist import get_dist_info, sync_random_seed
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from torch.utils.data import Dataset, Sampler

from cosub_mm.registry import DATA_SAMPLERS, DATASETS

__all__ = ['SeededIndex', 'SampleSeedSampler', 'SampleSeedDataset',
           'sample_seed']


class SeededIndex(int):
    """A dataset index that carries the seed of its sample.

    Behaves as the plain ``int`` index everywhere (indexing, arithmetic);
    :class:`SampleSeedDataset` reads ``seed``.
    """

    seed: int

    def __new__(cls, index: int, seed: int) -> 'SeededIndex':
        obj = super().__new__(cls, index)
        obj.seed = seed
        return obj

    def __reduce__(self) -> tuple:
        # workers receive indices through a pickling queue
        return SeededIndex, (int(self), self.seed)

    def __repr__(self) -> str:
        return f'SeededIndex({int(self)}, seed={self.seed})'


def sample_seed(seed: int, rank: int, epoch: int, position: int) -> int:
    """The seed of the sample at ``position`` of ``rank``'s stream in
    ``epoch``: a 32-bit value mixed by numpy's ``SeedSequence``, so nearby
    positions get unrelated streams."""
    words = [int(v) & 0xFFFFFFFFFFFFFFFF
             for v in (seed, rank, epoch, position)]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


@DATA_SAMPLERS.register_module()
class SampleSeedSampler(Sampler):
    """Wrap a sampler so that every index it yields carries its sample's
    seed (a :class:`SeededIndex`).

    The wrapped sampler decides the order (mmengine's ``DefaultSampler``
    and ``InfiniteSampler``, mmpretrain's ``RepeatAugSampler``, ...); the
    seed of a sample is :func:`sample_seed` of the base seed, this rank,
    the epoch the iteration started in and the sample's position in this
    rank's stream (for ``InfiniteSampler``, counted from the start of the
    run).

    Args:
        dataset: The dataset (given by the runner).
        sampler (dict): Config of the wrapped sampler, built with the same
            ``dataset`` and ``seed``.
        seed (int, optional): Base seed; the runner passes the config
            seed. ``None`` draws one shared by all ranks, as mmengine's
            samplers do.
    """

    def __init__(self, dataset: Any, sampler: dict,
                 seed: Optional[int] = None) -> None:
        self.seed = sync_random_seed() if seed is None else int(seed)
        self.sampler = MMENGINE_DATA_SAMPLERS.build(
            sampler, default_args=dict(dataset=dataset, seed=self.seed))
        self.rank = get_dist_info()[0]
        self.epoch = 0
        self._skip = 0
        self._next = 0  # position of the next sample of an infinite stream

    @property
    def infinite(self) -> bool:
        """Whether the wrapped sampler yields one endless stream (whose
        positions continue across iterations) instead of epochs."""
        return isinstance(self.sampler, InfiniteSampler)

    def __iter__(self) -> Iterator[SeededIndex]:
        # the epoch is read once: the order of the wrapped sampler is fixed
        # when its iteration starts, whatever set_epoch does meanwhile
        epoch, infinite = self.epoch, self.infinite
        if infinite:
            # mmengine's InfiniteSampler.__iter__ delegates to one shared
            # generator and would close it when a loader iterator is
            # dropped; reading the generator itself keeps it open
            start, indices = self._next, self.sampler.indices
        else:
            start = self._skip
            indices = itertools.islice(iter(self.sampler), start, None)
        self._skip = 0
        for position, index in enumerate(indices, start):
            if infinite:
                self._next = position + 1
            yield SeededIndex(index, sample_seed(self.seed, self.rank,
                                                 epoch, position))

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of this sampler and of the wrapped one."""
        self.epoch = epoch
        if hasattr(self.sampler, 'set_epoch'):
            self.sampler.set_epoch(epoch)

    def skip(self, samples: int) -> None:
        """Make the next iteration start at position ``samples`` of its
        epoch (of the run, for an infinite stream), as if those samples
        had been drawn: their indices are computed, none is loaded."""
        if self.infinite:
            # mmengine's InfiniteSampler keeps one generator across
            # iterations: restart it and drop the skipped indices
            self.sampler.indices = self.sampler._indices_of_rank()
            collections.deque(
                itertools.islice(self.sampler.indices, samples), maxlen=0)
            self._next = samples
        else:
            self._skip = samples


class _SeededRNGs:
    """Seed Python's, numpy's and torch's (CPU) global RNGs for one sample
    and give the caller its states back afterwards."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __enter__(self) -> None:
        self._states = (random.getstate(), np.random.get_state(),
                        torch.random.default_generator.get_state())
        random.seed(self.seed)
        np.random.seed(self.seed)
        # the CPU generator only: torch.manual_seed would reseed CUDA too
        torch.random.default_generator.manual_seed(self.seed)

    def __exit__(self, *exc: Any) -> None:
        python, numpy, torch_cpu = self._states
        random.setstate(python)
        np.random.set_state(numpy)
        torch.random.default_generator.set_state(torch_cpu)


@DATASETS.register_module()
class SampleSeedDataset(Dataset):
    """Wrap a dataset so that a sample asked for with a
    :class:`SeededIndex` is loaded and augmented with the global RNGs
    seeded from its seed; the caller's RNG states are left as they were.

    An index without a seed (a plain sampler) loads as the wrapped dataset
    does. Attributes (``metainfo``, ``full_init``, ...) are those of the
    wrapped dataset.

    Args:
        dataset (dict | Dataset): The wrapped dataset or its config.
        **overrides: Keys of the wrapped dataset's config, set over those
            in ``dataset``: ``--cfg-options
            train_dataloader.dataset.data_root=...`` then works as on the
            unwrapped config.
    """

    def __init__(self, dataset: Union[dict, Dataset],
                 **overrides: Any) -> None:
        if isinstance(dataset, dict):
            dataset = MMENGINE_DATASETS.build({**dataset, **overrides})
        elif overrides:
            raise TypeError(
                'SampleSeedDataset: the keys '
                f'{sorted(overrides)} override a dataset config, but '
                f'dataset is a built {type(dataset).__name__}')
        self.dataset = dataset

    def __getitem__(self, idx: int) -> Any:
        seed = getattr(idx, 'seed', None)
        if seed is None:
            return self.dataset[idx]
        with _SeededRNGs(seed):
            return self.dataset[int(idx)]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:
        if name == 'dataset':  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)
