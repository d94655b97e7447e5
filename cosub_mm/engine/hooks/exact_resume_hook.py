"""Make ``--resume`` continue a run exactly where it stopped."""
import functools
import logging
import random
from typing import Any, Dict, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log

from cosub_mm.datasets.sample_seeds import SampleSeedSampler
from cosub_mm.registry import HOOKS

__all__ = ['ExactResumeHook']


def get_rng_state() -> Dict[str, Any]:
    """Return the states of Python's, numpy's and torch's global RNGs.

    Only tensors, ints, floats, strings and tuples are used, so a checkpoint
    holding the state still loads with weights-only unpickling.
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = dict(
        python=random.getstate(),
        numpy=(kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
               int(has_gauss), float(gauss)),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore the states returned by :func:`get_rng_state`."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state(
        (kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _seeded_sampler(loader: Any) -> Optional[SampleSeedSampler]:
    """The loader's :class:`SampleSeedSampler`, if it has one."""
    sampler = getattr(loader, 'sampler', None)
    if not isinstance(sampler, SampleSeedSampler):
        sampler = getattr(getattr(loader, 'batch_sampler', None), 'sampler',
                          None)
    return sampler if isinstance(sampler, SampleSeedSampler) else None


def _skip_with_workers(iterator: Any, loader: Any,
                       sampler: SampleSeedSampler, batches: int) -> None:
    """:func:`skip_batches_at_sampler` for a loader with worker processes
    and per-sample seeds: the sampler restarts at the saved position and a
    new loader iterator feeds the workers from there."""
    inner = iterator._iterator
    if not loader.persistent_workers and hasattr(inner,
                                                 '_shutdown_workers'):
        # the loop's first iterator already prefetches from the start
        inner._shutdown_workers()
    per_epoch = None if sampler.infinite else len(loader)
    full, rest = (0, batches) if per_epoch is None else divmod(
        batches, per_epoch)
    if rest == 0 and full > 0:
        # saved at an epoch end: an exhausted iterator of that epoch, so
        # the first new batch crosses it as in the uninterrupted run (whose
        # next loader iterator draws from torch's RNG after the checkpoint)
        full, rest = full - 1, per_epoch
    if full:
        iterator._epoch += full
        sampler.set_epoch(iterator._epoch)
    batch_size = getattr(loader.batch_sampler, 'batch_size', None) or 1
    samples = rest * batch_size
    if per_epoch is not None:
        samples = min(samples, len(sampler))
    sampler.skip(samples)
    # persistent workers: ``_reset`` drops what they prefetched
    iterator._iterator = iter(loader)


def skip_batches_at_sampler(iterator: Any, batches: int) -> bool:
    """Advance an ``IterBasedTrainLoop`` data iterator by ``batches``
    batches of indices, loading no sample.

    Without worker processes, the batch sampler is asked for its index
    batches (cheap: index arithmetic) and nothing is fetched. An epoch end
    met on the way is crossed as mmengine's ``_InfiniteDataloaderIterator``
    crosses it (``set_epoch`` of the next epoch, a new loader iterator); an
    epoch end right at the saved position is left to the first new batch,
    as in the uninterrupted run (its new loader iterator draws from torch's
    RNG after the checkpoint).

    With worker processes, the loader must draw its samples through a
    :class:`~cosub_mm.datasets.SampleSeedSampler` (and load them through a
    :class:`~cosub_mm.datasets.SampleSeedDataset`): a worker's own RNGs
    would otherwise miss the draws of the skipped samples. The sampler
    then restarts at the saved position (:meth:`SampleSeedSampler.skip`)
    and a new loader iterator starts the workers there.

    Args:
        iterator: The loop's ``dataloader_iterator``.
        batches (int): Batches to skip (the saved iteration).

    Returns:
        bool: False (nothing done) when the loader cannot be skipped here.
    """
    loader = getattr(iterator, '_dataloader', None)
    inner = getattr(iterator, '_iterator', None)
    if loader is None:
        return False
    if loader.num_workers != 0:
        sampler = _seeded_sampler(loader)
        if sampler is None:
            return False
        _skip_with_workers(iterator, loader, sampler, batches)
        return True
    if not hasattr(inner, '_next_index') or \
            getattr(inner, '_sampler_iter', None) is None:
        return False
    sampler = getattr(loader.batch_sampler, 'sampler', loader.sampler)
    for _ in range(batches):
        try:
            iterator._iterator._next_index()
        except StopIteration:
            iterator._epoch += 1
            if hasattr(sampler, 'set_epoch'):
                sampler.set_epoch(iterator._epoch)
            iterator._iterator = iter(loader)
            iterator._iterator._next_index()
    return True


def start_persistent_workers(loader: Any) -> bool:
    """Start a persistent-worker loader's workers without loading a sample.

    An ``EpochBasedTrainLoop`` resumed at an epoch end would create the
    loader's persistent iterator in its first epoch and so draw its base
    seed from torch's RNG after the restored state, where the uninterrupted
    run only resets its iterator (no draw). Creating it beforehand, on an
    exhausted sampler, keeps the draws aligned. Only with per-sample seeds:
    new workers would otherwise augment with other RNGs anyway.

    Returns:
        bool: Whether the workers were started here.
    """
    sampler = _seeded_sampler(loader)
    if sampler is None or not getattr(loader, 'persistent_workers', False) \
            or getattr(loader, '_iterator', True) is not None or \
            sampler.infinite:
        return False
    sampler.skip(len(sampler))
    iter(loader)
    return True


class _RestoreAfterSkip:
    """Wraps the train loop's data iterator: after the ``skip`` batches that
    ``IterBasedTrainLoop`` advances on resume, restore the saved RNG state
    just before the first new batch is loaded. With ``replayed=False`` the
    skipped batches were already skipped at the sampler
    (:func:`skip_batches_at_sampler`) and the loop's advancing loads
    nothing."""

    def __init__(self, iterator: Any, skip: int, state: Dict[str, Any],
                 replayed: bool = True) -> None:
        self._iterator = iterator
        self._skip = skip
        self._state: Optional[Dict[str, Any]] = state
        self._replayed = replayed

    def __iter__(self) -> '_RestoreAfterSkip':
        return self

    def __next__(self) -> Any:
        if self._skip == 0 and self._state is not None:
            set_rng_state(self._state)
            self._state = None
        self._skip -= 1
        if self._skip >= 0 and not self._replayed:
            return None  # IterBasedTrainLoop discards the skipped batches
        return next(self._iterator)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._iterator, name)


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Save the global RNG states in checkpoints and restore them on resume.

    mmengine 0.10.7 restores weights, optimizer, schedulers and the data
    position on ``--resume`` (``IterBasedTrainLoop`` replays the data loader
    up to the saved iteration), but re-seeds the RNGs from the config seed.
    The random draws that follow then differ from those of the run that was
    interrupted: the per-sample drop-path masks that make cosub's submodels
    (``torch``), Mixup/CutMix's λ and box (``numpy``, ``torch``) and the
    augmentations of the data pipeline (``numpy``, ``random``), so a resumed
    run drifts away from an uninterrupted one. With this hook the resumed
    run is identical, bit for bit, on a deterministic set-up (CPU, fixed
    seed; the matrix of loops, workers and processes is in
    ``docs/reliability.md``).

    ``IterBasedTrainLoop`` reaches the saved position by loading every
    batch already trained (mmengine#1520). The hook skips those batches at
    the sampler instead (:func:`skip_batches_at_sampler`: their indices are
    drawn, no sample is loaded), so the time to resume does not grow with
    the position: always without worker processes, and with workers when
    the loader draws per-sample seeds
    (:class:`~cosub_mm.datasets.SampleSeedSampler` and
    :class:`~cosub_mm.datasets.SampleSeedDataset`). A loader with workers
    and no per-sample seeds is replayed, which keeps it exact.

    Validation during training draws from the same RNGs (a data loader
    iterator draws its base seed from torch's RNG even without workers), and
    it runs after the checkpoint of its iteration is saved; the hook
    therefore gives validation the RNGs back as they were before it, so the
    training draws do not depend on whether and when validation ran. With
    ``isolate_val=False`` validation draws from the training RNGs as it
    does without the hook, so an uninterrupted run is the same as one
    without it (for runs recorded before the hook was added); a resume is
    then exact from a checkpoint of an iteration that does not validate
    (:class:`TimeLimitHook` stops at those only).

    The states are stored under ``checkpoint['meta']['rng_state']`` (and,
    with several processes, every rank's under ``rng_state_ranks``, each
    rank resuming from its own) as tensors and plain Python values, so the
    checkpoint stays loadable with weights-only unpickling; only a resume
    uses them.

    Args:
        skip_at_sampler (bool): Skip the trained batches at the sampler
            where the loader allows it, instead of mmengine's replay.
            Defaults to True.
        isolate_val (bool): Give validation its own RNG draws, so that the
            training draws do not depend on it. Defaults to True.

    Example:
        >>> custom_hooks = [dict(type='cosub_mm.ExactResumeHook')]
    """

    priority = 'VERY_LOW'

    def __init__(self,
                 skip_at_sampler: bool = True,
                 isolate_val: bool = True) -> None:
        self.skip_at_sampler = skip_at_sampler
        self.isolate_val = isolate_val
        self._resumed_state: Optional[Dict[str, Any]] = None
        self._val_state: Optional[Dict[str, Any]] = None
        self._rank_states: Optional[list] = None

    def before_run(self, runner: Any) -> None:
        """Refuse a second ExactResumeHook; with several processes, gather
        every rank's RNG states whenever a checkpoint is saved.

        Two hooks would both skip the trained batches on resume, and the
        run would start past its saved position. ``Runner.save_checkpoint``
        (and so ``before_save_checkpoint``) runs on rank 0 only, but every
        rank's ``CheckpointHook`` calls it: the wrapper gathers the states
        there, where all ranks pass.
        """
        count = sum(isinstance(h, ExactResumeHook)
                    for h in getattr(runner, 'hooks', []))
        if count > 1:
            raise ValueError(
                f'ExactResumeHook is registered {count} times (the '
                'classification runtime already has it as '
                'default_hooks.exact_resume): keep one, e.g. remove it from '
                'custom_hooks, or set default_hooks.exact_resume=None')
        if get_world_size() < 2:
            return
        save = runner.save_checkpoint

        @functools.wraps(save)
        def save_checkpoint(*args: Any, **kwargs: Any) -> Any:
            self._rank_states = all_gather_object(self._val_state or
                                                  get_rng_state())
            return save(*args, **kwargs)

        runner.save_checkpoint = save_checkpoint

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        """Store the RNG states as the next training iteration sees them
        (every rank's, gathered in :meth:`before_run`'s wrapper)."""
        state = self._val_state or get_rng_state()  # save_best: in val
        meta = checkpoint.setdefault('meta', {})
        meta['rng_state'] = state
        if self._rank_states is not None:
            meta['rng_state_ranks'] = self._rank_states
            self._rank_states = None

    def before_val(self, runner: Any) -> None:
        """Remember the training RNG states before validation draws."""
        if self.isolate_val:
            self._val_state = get_rng_state()

    def after_val(self, runner: Any) -> None:
        """Give training its RNG states back."""
        if self._val_state is not None:
            set_rng_state(self._val_state)
            self._val_state = None

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        """Remember this rank's saved states; they are restored in
        ``before_train``."""
        meta = checkpoint.get('meta', {})
        ranks = meta.get('rng_state_ranks')
        if ranks and len(ranks) == get_world_size():
            self._resumed_state = ranks[get_rank()]
        else:
            if ranks or get_world_size() > 1:
                print_log(
                    'ExactResumeHook: the checkpoint holds the RNG states of '
                    f'{len(ranks or [None])} process(es), this run has '
                    f'{get_world_size()}: every rank resumes from rank 0\'s, '
                    'so the run is not exact', logger='current',
                    level=logging.WARNING)
            self._resumed_state = meta.get('rng_state')

    def before_train(self, runner: Any) -> None:
        """Restore the saved states once the data position is replayed."""
        state, self._resumed_state = self._resumed_state, None
        loop = runner.train_loop
        if state is None or loop.iter == 0:
            # nothing saved, or ``load_from`` (which also calls
            # after_load_checkpoint) starting a new run: keep the seed
            return
        if hasattr(loop, 'dataloader_iterator'):
            # IterBasedTrainLoop advances ``loop.iter`` batches after
            # before_train: skip them at the sampler where the loader
            # allows (nothing is loaded), else let it replay them; restore
            # the state just before the first new batch.
            skipped = self.skip_at_sampler and skip_batches_at_sampler(
                loop.dataloader_iterator, loop.iter)
            print_log(
                f'ExactResumeHook: {loop.iter} batches skipped at the '
                'sampler, none loaded' if skipped else
                f'ExactResumeHook: {loop.iter} batches replayed (a loader '
                'with worker processes is replayed to stay exact unless '
                'it draws through cosub_mm.SampleSeedSampler)',
                logger='current')
            loop.dataloader_iterator = _RestoreAfterSkip(
                loop.dataloader_iterator, loop.iter, state,
                replayed=not skipped)
        else:
            # EpochBasedTrainLoop starts a new epoch: restore now.
            start_persistent_workers(loop.dataloader)
            set_rng_state(state)
