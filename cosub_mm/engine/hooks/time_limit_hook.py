"""Stop training at a checkpoint once a time limit has passed."""
import time
from typing import Any, Dict, Optional

from mmengine.hooks import Hook
from mmengine.runner import IterBasedTrainLoop

from cosub_mm.registry import HOOKS

__all__ = ['TimeLimitHook']


@HOOKS.register_module()
class TimeLimitHook(Hook):
    """End a run cleanly at its first checkpoint after ``hours``.

    For runs longer than one sitting of a machine: the run stops right
    after ``CheckpointHook`` has saved, and ``--resume`` continues it from
    there; with :class:`ExactResumeHook` the continued run is the run that
    did not stop. The stop is only made after a checkpoint of an iteration
    (or epoch) that does not validate, because validation draws from the
    same RNGs after the checkpoint is saved: there the checkpoint holds the
    states the next training step draws from, with or without
    ``ExactResumeHook(isolate_val=False)``. The clock starts when the hook
    is built; ``stopped`` tells whether it ended the run.

    Example:
        >>> custom_hooks = [dict(type='cosub_mm.TimeLimitHook', hours=1.5)]

    Args:
        hours (float): Time after which the next such checkpoint ends the
            run (0: the first one).
    """

    # after CheckpointHook (VERY_LOW): its checkpoint of the step is saved
    priority = 'LOWEST'

    def __init__(self, hours: float) -> None:
        if not hours >= 0:
            raise ValueError(
                f'TimeLimitHook: hours must be >= 0, got {hours}')
        self.hours = float(hours)
        self.deadline = time.time() + 3600 * self.hours
        self.stopped = False
        self._last: Optional[str] = None

    def before_train(self, runner: Any) -> None:
        """Note the checkpoint a resumed run starts from."""
        self._last = runner.message_hub.get_info('last_ckpt')

    def after_train_iter(self,
                         runner: Any,
                         batch_idx: int,
                         data_batch: Any = None,
                         outputs: Optional[Dict[str, Any]] = None) -> None:
        """Stop after this iteration's checkpoint when the time is up."""
        if isinstance(runner.train_loop, IterBasedTrainLoop):
            self._check(runner, runner.iter + 1, runner.max_iters)

    def after_train_epoch(self, runner: Any) -> None:
        """Stop after this epoch's checkpoint when the time is up."""
        if not isinstance(runner.train_loop, IterBasedTrainLoop):
            self._check(runner, runner.epoch + 1, runner.max_epochs)

    def _check(self, runner: Any, step: int, end: int) -> None:
        last = runner.message_hub.get_info('last_ckpt')
        saved, self._last = last != self._last, last
        if not saved or step >= end or time.time() < self.deadline:
            return
        loop = runner.train_loop
        if getattr(runner, 'val_loop', None) is not None and (
                step >= loop.val_begin and step % loop.val_interval == 0):
            return
        loop.stop_training = True
        self.stopped = True
        runner.logger.info(
            f'TimeLimitHook: {self.hours:g} h passed; stopping after the '
            f'checkpoint {last} (step {step}): continue with --resume')
