"""Stop training when the loss becomes NaN or infinite."""
import math
from typing import Any, Dict, Optional, Sequence

from mmengine.hooks import Hook

from cosub_mm.registry import HOOKS

__all__ = ['NonFiniteLossHook', 'NonFiniteLossError']


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stop training at the first iteration whose loss is NaN or infinite.

    Runs before every other ``after_train_iter`` hook (priority
    ``VERY_HIGH``), so ``CheckpointHook`` never saves the bad iteration and
    the last good checkpoint stays the one ``last_checkpoint`` points to:
    resume from it with a lower learning rate or gradient clipping. The
    error names the iteration and every loss term (``loss_label``,
    ``loss_distill`` for cosub) with its value.

    Example:
        >>> custom_hooks = [dict(type='cosub_mm.NonFiniteLossHook')]

    Args:
        keys (Sequence[str], optional): The logged values to check. Defaults
            to every value whose name contains ``loss``.
    """

    priority = 'VERY_HIGH'

    def __init__(self, keys: Optional[Sequence[str]] = None) -> None:
        self.keys = None if keys is None else list(keys)

    def after_train_iter(self,
                         runner: Any,
                         batch_idx: int,
                         data_batch: Any = None,
                         outputs: Optional[Dict[str, Any]] = None) -> None:
        """Raise :class:`NonFiniteLossError` if a checked term is not finite.
        """
        if not outputs:
            return
        keys = self.keys or [k for k in outputs if 'loss' in k]
        values = {k: float(outputs[k]) for k in keys if k in outputs}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if not bad:
            return
        terms = ', '.join(f'{k}={v}' for k, v in values.items())
        last = runner.message_hub.get_info('last_ckpt')
        max_iters = getattr(runner, 'max_iters', None)
        raise NonFiniteLossError(
            f'Non-finite loss at iteration {runner.iter + 1}'
            f'{f"/{max_iters}" if max_iters else ""} (epoch '
            f'{runner.epoch + 1}): {", ".join(bad)} not finite ({terms}). '
            'Training stopped; no checkpoint was saved for this iteration. '
            f'Last good checkpoint: {last or "none saved yet"}. Resume from '
            'it with --resume after lowering the learning rate or adding '
            'gradient clipping (optim_wrapper.clip_grad).')
