"""Schedule the stochastic-depth rate of a backbone during training."""
from typing import Optional

from torch import nn

from cosub_mm.models.drop_path import (get_drop_path_rates,
                                       set_drop_path_rates)
from cosub_mm.registry import HOOKS
from .schedule_hook import LinearScheduleHook

__all__ = ['DropPathRateHook']


@HOOKS.register_module()
class DropPathRateHook(LinearScheduleHook):
    """Ramp the drop-path rate of the model's backbone linearly.

    The value is the largest block rate; ``rule`` spreads it over the blocks
    (:func:`cosub_mm.models.drop_path.set_drop_path_rates`). Cosub draws its
    submodels through stochastic depth, so the rate sets how different they
    are. Works on any model with a ``backbone`` (mmpretrain classifiers,
    mmseg segmentors) or on the model itself; DDP wrappers are unwrapped.
    Logs ``train/drop_path_rate``.

    Args:
        start_value (float): Rate until ``begin``. Defaults to 0.
        end_value (float, optional): Rate from ``end`` on. None keeps the
            backbone's largest rate at the start of training.
        begin (int): First step of the ramp. Defaults to 0.
        end (int): Step at which ``end_value`` is reached.
        by_epoch (bool): Steps are epochs (else iterations).
            Defaults to False.
        rule (str): ``'uniform'`` (every block drops with the rate, as the
            cosub and DeiT III authors do) or ``'linear'`` (0 at the first
            block up to the rate). The one knob for the rule, for cosub
            and baseline configs alike. Defaults to ``'uniform'``.

    Example:
        >>> # the backbone's rate in every block from the start (DeiT III)
        >>> custom_hooks = [dict(type='cosub_mm.DropPathRateHook',
        ...                      rule='uniform')]
        >>> # rate from 0 to 0.1 over 10k iterations, same in every block
        >>> custom_hooks = [dict(type='cosub_mm.DropPathRateHook',
        ...                      end_value=0.1, end=10000, rule='uniform')]
    """

    name = 'drop_path_rate'

    def __init__(self,
                 start_value: float = 0.0,
                 end_value: Optional[float] = None,
                 begin: int = 0,
                 end: int = 0,
                 by_epoch: bool = False,
                 rule: str = 'uniform') -> None:
        if rule not in ('uniform', 'linear'):
            raise ValueError("DropPathRateHook: rule must be 'uniform' or "
                             f"'linear', got {rule!r}")
        self.rule = rule
        super().__init__(start_value, end_value, begin, end, by_epoch)

    def check(self, value: float) -> None:
        if not 0.0 <= value < 1.0:
            raise ValueError(
                f'DropPathRateHook: rate must be in [0, 1), got {value}')

    @staticmethod
    def _target(model: nn.Module) -> nn.Module:
        backbone = getattr(model, 'backbone', None)
        return model if backbone is None else backbone

    def current(self, model: nn.Module) -> float:
        return max(get_drop_path_rates(self._target(model)), default=0.0)

    def apply(self, model: nn.Module, value: float) -> None:
        set_drop_path_rates(self._target(model), value, self.rule)
