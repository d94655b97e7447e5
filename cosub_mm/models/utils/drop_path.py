"""Find and set the stochastic-depth rates of any backbone, per block.

Cosub samples its submodels through per-sample stochastic depth, so the
classifier and the hooks need the rates of a backbone they did not build.
A *drop-path module* is any module with a ``drop_prob`` attribute whose class
name contains ``DropPath`` (mmcv's, timm's and ours). Its *block* is its name
up to the last numeric component (``layers.3`` for ``layers.3.ffn.
dropout_layer``, ``stages.0.1`` for ConvNeXt's ``stages.0.1.drop_path``):
the drop-path modules of one residual block share one rate.
"""
from collections import OrderedDict
from typing import Dict, List

import torch
from torch import nn

__all__ = ['block_drop_paths', 'get_drop_path_rates', 'set_drop_path_rates']

RULES = ('uniform', 'linear')


def _block_key(name: str) -> str:
    parts = name.split('.')
    numeric = [i for i, p in enumerate(parts) if p.isdigit()]
    return '.'.join(parts[:numeric[-1] + 1]) if numeric else name


def block_drop_paths(model: nn.Module) -> Dict[str, List[nn.Module]]:
    """Group a model's drop-path modules by residual block, in model order.

    Args:
        model (nn.Module): Usually a backbone.

    Returns:
        dict: Block name to the drop-path modules in that block.
    """
    blocks: Dict[str, List[nn.Module]] = OrderedDict()
    for name, module in model.named_modules():
        if 'DropPath' in type(module).__name__ and hasattr(
                module, 'drop_prob'):
            blocks.setdefault(_block_key(name), []).append(module)
    return blocks


def get_drop_path_rates(model: nn.Module) -> List[float]:
    """Return the drop rate of each block (the largest of its modules)."""
    return [
        max(float(m.drop_prob) for m in modules)
        for modules in block_drop_paths(model).values()
    ]


def set_drop_path_rates(model: nn.Module, rate: float,
                        rule: str = 'uniform') -> List[float]:
    """Set every block's drop rate from a maximum ``rate`` and a rule.

    Args:
        model (nn.Module): Usually a backbone.
        rate (float): The rate of the deepest block, in [0, 1).
        rule (str): ``'uniform'``: every block drops with ``rate`` (as the
            cosub and DeiT III authors do); ``'linear'``: rates grow
            linearly from 0 at the first block to ``rate`` at the last
            (mmpretrain's and timm's default).

    Returns:
        list[float]: The rate set for each block.
    """
    if rule not in RULES:
        raise ValueError(f'drop_path_rule must be one of {RULES}, got {rule!r}')
    if not 0.0 <= rate < 1.0:
        raise ValueError(f'drop path rate must be in [0, 1), got {rate}')
    blocks = block_drop_paths(model)
    if not blocks:
        raise ValueError(
            f'{type(model).__name__} has no DropPath module: it has no '
            'stochastic depth to set')
    n = len(blocks)
    if rule == 'uniform':
        rates = [rate] * n
    else:
        rates = torch.linspace(0, rate, n).tolist()
    for modules, r in zip(blocks.values(), rates):
        for module in modules:
            module.drop_prob = float(r)
    return rates
