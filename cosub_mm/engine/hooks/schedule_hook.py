"""A linear schedule of one model attribute, shared by the cosub hooks."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import nn

__all__ = ['LinearScheduleHook']


class LinearScheduleHook(Hook):
    """Move a value linearly from ``start_value`` to ``end_value``.

    The value at step t (the iteration or epoch about to run, counted from
    0) is ``start + (end - start) * clip((t - begin) / (end - begin), 0, 1)``:
    ``start_value`` up to ``begin``, ``end_value`` from ``end`` on. It only
    depends on the runner's iteration/epoch, so resuming gives the same
    values. Subclasses say what the value sets (:meth:`apply`) and where the
    default ``end_value`` comes from (:meth:`current`).

    Args:
        start_value (float): Value until step ``begin``.
        end_value (float, optional): Value from step ``end`` on. None takes
            the model's value at the start of training.
        begin (int): First step of the ramp. Defaults to 0.
        end (int): Step at which ``end_value`` is reached. Defaults to 0
            (``end_value`` from the start).
        by_epoch (bool): Count steps in epochs (the value changes at each
            epoch start) or in iterations. Defaults to False.
    """

    priority = 'NORMAL'
    name = 'value'

    def __init__(self,
                 start_value: float = 0.0,
                 end_value: Optional[float] = None,
                 begin: int = 0,
                 end: int = 0,
                 by_epoch: bool = False) -> None:
        cls = type(self).__name__
        if not (isinstance(begin, int) and isinstance(end, int)
                and 0 <= begin <= end):
            raise ValueError(f'{cls}: need integers 0 <= begin <= end, got '
                             f'begin={begin!r}, end={end!r}')
        self.start_value = float(start_value)
        self.end_value = None if end_value is None else float(end_value)
        self.begin = begin
        self.end = end
        self.by_epoch = by_epoch
        self.check(self.start_value)
        if self.end_value is not None:
            self.check(self.end_value)

    # --- to override -----------------------------------------------------
    def check(self, value: float) -> None:
        """Raise ``ValueError`` for a value out of range."""

    def current(self, model: nn.Module) -> float:
        """The model's value before training (the default ``end_value``)."""
        raise NotImplementedError

    def apply(self, model: nn.Module, value: float) -> None:
        """Set the value on the model."""
        raise NotImplementedError

    # --- schedule ----------------------------------------------------------
    def value_at(self, step: int) -> float:
        """The scheduled value at ``step`` (needs ``end_value`` set)."""
        if self.end == self.begin:
            progress = 1.0 if step >= self.end else 0.0
        else:
            progress = min(max((step - self.begin) /
                               (self.end - self.begin), 0.0), 1.0)
        return self.start_value + (self.end_value -
                                   self.start_value) * progress

    @staticmethod
    def unwrap(runner) -> nn.Module:
        """The runner's model, out of its DDP/FSDP wrapper if any."""
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_train(self, runner) -> None:
        if self.end_value is None:
            self.end_value = float(self.current(self.unwrap(runner)))
            self.check(self.end_value)

    def _update(self, runner, step: int) -> None:
        value = self.value_at(step)
        self.apply(self.unwrap(runner), value)
        runner.message_hub.update_scalar(f'train/{self.name}', value)

    def before_train_epoch(self, runner) -> None:
        if self.by_epoch:
            self._update(runner, runner.epoch)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        if not self.by_epoch:
            self._update(runner, runner.iter)
