"""mmengine's ``compile = True`` on this torch: the optimizer step kept
eager."""

__all__ = ['fix_compiled_optimizer_step']


def fix_compiled_optimizer_step() -> bool:
    """Run ``OptimWrapper.step`` outside Dynamo in a compiled ``train_step``.

    Fixes ``torch._dynamo.exc.InternalTorchDynamoError: AttributeError:
    'UserDefinedDictVariable' object has no attribute 'items'`` raised from
    ``torch/_dynamo/variables/optimizer.py`` when a config sets
    ``compile = True`` (or a dict): mmengine 0.10.7's runner compiles the
    whole ``model.train_step``, and torch 2.13's Dynamo fails tracing the
    optimizer's ``step`` that mmengine's param-scheduler wrapper calls. With
    the fix the step runs eagerly (one graph break); the forward, the loss
    and the backward stay compiled.

    Returns:
        bool: Whether the fix was applied.
    """
    import torch
    from mmengine.optim import OptimWrapper
    original = OptimWrapper.step
    if getattr(original, '_cosub_eager', False):
        return False
    step = torch._dynamo.disable(original)
    step._cosub_eager = True
    OptimWrapper.step = step
    return True
