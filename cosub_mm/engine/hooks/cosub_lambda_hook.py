"""Schedule the weight λ of cosub's distillation terms."""
from typing import Optional

from torch import nn

from cosub_mm.registry import HOOKS
from .schedule_hook import LinearScheduleHook

__all__ = ['CosubLambdaHook']


@HOOKS.register_module()
class CosubLambdaHook(LinearScheduleHook):
    """Ramp cosub's λ linearly, e.g. a warmup from 0.

    Early in training both submodels are near chance, so their mutual
    targets carry little signal; a warmup lets the label terms lead first.
    The paper (Touvron et al., CVPR 2023) keeps λ = 0.5 constant: this hook
    is an option, off unless configured. It sets ``model.cosub_loss.lambda_``
    (DDP wrappers are unwrapped) and logs ``train/cosub_lambda``.

    Args:
        start_value (float): λ until ``begin``. Defaults to 0.
        end_value (float, optional): λ from ``end`` on. None keeps the
            model's configured λ (``cosub_loss.lambda_``). Defaults to None.
        begin (int): First step of the ramp. Defaults to 0.
        end (int): Step at which ``end_value`` is reached.
        by_epoch (bool): Steps are epochs (else iterations).
            Defaults to False.

    Example:
        >>> # λ from 0 to the configured 0.5 over the first 5 epochs
        >>> custom_hooks = [dict(type='cosub_mm.CosubLambdaHook', end=5,
        ...                      by_epoch=True)]
    """

    name = 'cosub_lambda'

    def __init__(self,
                 start_value: float = 0.0,
                 end_value: Optional[float] = None,
                 begin: int = 0,
                 end: int = 0,
                 by_epoch: bool = False) -> None:
        super().__init__(start_value, end_value, begin, end, by_epoch)

    def check(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError(
                f'CosubLambdaHook: λ must be in [0, 1], got {value}')

    @staticmethod
    def _loss(model: nn.Module) -> nn.Module:
        loss = getattr(model, 'cosub_loss', None)
        if loss is None:
            raise TypeError(
                f'CosubLambdaHook: the model {type(model).__name__} has no '
                '`cosub_loss`; use it with model type '
                "'cosub_mm.CosubClassifier' (or remove the hook)")
        return loss

    def current(self, model: nn.Module) -> float:
        return self._loss(model).lambda_

    def apply(self, model: nn.Module, value: float) -> None:
        self._loss(model).lambda_ = value
