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


def skip_batches_at_sampler(iterator: Any, batches: int) -> bool:
    """Advance an ``IterBasedTrainLoop`` data iterator by ``batches``
    batches of indices, loading no sample.

    The batch sampler is asked for its index batches (cheap: index
    arithmetic) and nothing is fetched. An epoch end met on the way is
    crossed as mmengine's ``_InfiniteDataloaderIterator`` crosses it
    (``set_epoch`` of the next epoch, a new loader iterator); an epoch end
    right at the saved position is left to the first new batch, as in the
    uninterrupted run (its new loader iterator draws from torch's RNG after
    the checkpoint).

    Only a loader without worker processes can be skipped this way: a
    worker iterator prefetches batches when it is created, and the workers'
    own RNGs would miss the draws of the skipped samples.

    Args:
        iterator: The loop's ``dataloader_iterator``.
        batches (int): Batches to skip (the saved iteration).

    Returns:
        bool: False (nothing done) when the loader cannot be skipped here.
    """
    loader = getattr(iterator, '_dataloader', None)
    inner = getattr(iterator, '_iterator', None)
    if loader is None or loader.num_workers != 0 or \
            not hasattr(inner, '_next_index') or \
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
    batch already trained (mmengine#1520). Where the loader has no worker
    processes the hook skips those batches at the sampler instead
    (:func:`skip_batches_at_sampler`: their indices are drawn, no sample is
    loaded), so the time to resume does not grow with the position; a
    loader with workers is replayed, which keeps it exact.

    Validation during training draws from the same RNGs (a data loader
    iterator draws its base seed from torch's RNG even without workers), and
    it runs after the checkpoint of its iteration is saved; the hook
    therefore gives validation the RNGs back as they were before it, so the
    training draws do not depend on whether and when validation ran.

    The states are stored under ``checkpoint['meta']['rng_state']`` (and,
    with several processes, every rank's under ``rng_state_ranks``, each
    rank resuming from its own) as tensors and plain Python values, so the
    checkpoint stays loadable with weights-only unpickling; only a resume
    uses them.

    Args:
        skip_at_sampler (bool): Skip the trained batches at the sampler
            where the loader allows it, instead of mmengine's replay.
            Defaults to True.

    Example:
        >>> custom_hooks = [dict(type='cosub_mm.ExactResumeHook')]
    """

    priority = 'VERY_LOW'

    def __init__(self, skip_at_sampler: bool = True) -> None:
        self.skip_at_sampler = skip_at_sampler
        self._resumed_state: Optional[Dict[str, Any]] = None
        self._val_state: Optional[Dict[str, Any]] = None
        self._rank_states: Optional[list] = None

    def before_run(self, runner: Any) -> None:
        """With several processes, gather every rank's RNG states whenever
        a checkpoint is saved.

        ``Runner.save_checkpoint`` (and so ``before_save_checkpoint``) runs
        on rank 0 only, but every rank's ``CheckpointHook`` calls it: the
        wrapper gathers the states there, where all ranks pass.
        """
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
                'with worker processes is replayed to stay exact)',
                logger='current')
            loop.dataloader_iterator = _RestoreAfterSkip(
                loop.dataloader_iterator, loop.iter, state,
                replayed=not skipped)
        else:
            # EpochBasedTrainLoop starts a new epoch: restore now.
            set_rng_state(state)
