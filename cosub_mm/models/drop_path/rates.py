"""Find and set the stochastic-depth rates of any backbone, per block.

Cosub samples its submodels through per-sample stochastic depth, so the
classifier and the hooks need the rates of a backbone they did not build.
A *drop-path module* is any module with a ``drop_prob`` attribute whose class
name contains ``DropPath`` (mmcv's, timm's and ours). Its *block* is its name
up to the last numeric component (``layers.3`` for ``layers.3.ffn.
dropout_layer``, ``stages.0.1`` for ConvNeXt's ``stages.0.1.drop_path``):
the drop-path modules of one residual block share one rate.

Some backbones (mmpretrain's ConvNeXt, timm's models) build an ``nn.Identity``
instead of a drop-path module where the rate is 0, e.g. in the first block of
the linear rule. Such a *placeholder* (an ``nn.Identity`` whose attribute name
starts with ``drop_path``) counts as a block of rate 0, and
:func:`set_drop_path_rates` swaps it for a ``DropPath`` of the kind the model
already has (timm's in a timm model, else mmcv's) so that a uniform rule
reaches every block. Through mmpretrain's ``TIMMBackbone`` the blocks are
``timm_model.blocks.N`` and are found the same way.
"""
from collections import OrderedDict
from typing import Callable, Dict, List

import numpy as np
from torch import nn

__all__ = [
    'is_drop_path', 'drop_rate', 'block_drop_paths', 'get_drop_path_rates',
    'set_drop_path_rates', 'prepare_submodels'
]

RULES = ('uniform', 'linear')


def _block_key(name: str) -> str:
    parts = name.split('.')
    numeric = [i for i, p in enumerate(parts) if p.isdigit()]
    return '.'.join(parts[:numeric[-1] + 1]) if numeric else name


def is_drop_path(module: nn.Module) -> bool:
    """Whether ``module`` is a drop-path module (mmcv's, timm's, ours)."""
    return 'DropPath' in type(module).__name__ and hasattr(
        module, 'drop_prob')


def drop_rate(module: nn.Module) -> float:
    """Drop rate of a drop-path module (0 for an ``nn.Identity``
    placeholder)."""
    return float(getattr(module, 'drop_prob', 0.0))


def _is_placeholder(name: str, module: nn.Module) -> bool:
    return type(module) is nn.Identity and name.rsplit(
        '.', 1)[-1].startswith('drop_path')


def block_drop_paths(model: nn.Module) -> Dict[str, List[nn.Module]]:
    """Group a model's drop-path modules by residual block, in model order.

    Args:
        model (nn.Module): Usually a backbone.

    Returns:
        dict: Block name to the drop-path modules in that block;
        ``nn.Identity`` placeholders (rate 0) are included.
    """
    blocks: Dict[str, List[nn.Module]] = OrderedDict()
    for name, module in model.named_modules():
        if is_drop_path(module) or _is_placeholder(name, module):
            blocks.setdefault(_block_key(name), []).append(module)
    return blocks


def get_drop_path_rates(model: nn.Module) -> List[float]:
    """Return the drop rate of each block (the largest of its modules)."""
    return [
        max(drop_rate(m) for m in modules)
        for modules in block_drop_paths(model).values()
    ]


def _new_drop_path(model: nn.Module) -> Callable[[], nn.Module]:
    """A maker of ``DropPath(0)`` of the kind ``model`` already uses.

    A timm model gets timm's ``DropPath``, whose draws differ from mmcv's,
    so that all its blocks draw alike; a model without one gets mmcv's.
    """
    existing = next((m for m in model.modules() if is_drop_path(m)), None)
    if existing is not None:
        try:
            type(existing)(0.0)
            return lambda: type(existing)(0.0)
        except TypeError:  # a drop path that is not built from its rate
            pass
    from mmcv.cnn.bricks import DropPath
    return lambda: DropPath(0.0)


def _materialize_placeholders(model: nn.Module) -> None:
    """Replace ``nn.Identity`` drop-path placeholders by ``DropPath(0)``."""
    placeholders = [
        name for name, module in model.named_modules()
        if _is_placeholder(name, module)
    ]
    if not placeholders:
        return
    make = _new_drop_path(model)
    for name in placeholders:
        parent_name, _, attr = name.rpartition('.')
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, make())


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
        raise ValueError(
            f'drop path rule must be one of {RULES}, got {rule!r}')
    if not 0.0 <= rate < 1.0:
        raise ValueError(f'drop path rate must be in [0, 1), got {rate}')
    _materialize_placeholders(model)
    blocks = block_drop_paths(model)
    if not blocks:
        raise ValueError(
            f'{type(model).__name__} has no DropPath module: it has no '
            'stochastic depth to set')
    n = len(blocks)
    if rule == 'uniform':
        rates = [rate] * n
    else:
        # float64 like mmpretrain's ViT/DeiT3 (np.linspace), not float32
        rates = np.linspace(0.0, rate, n).tolist()
    for modules, r in zip(blocks.values(), rates):
        for module in modules:
            module.drop_prob = float(r)
    return rates


def prepare_submodels(owner: str, backbone: nn.Module) -> List[float]:
    """Check that a cosub model's submodels can differ.

    Shared by every cosub model (classifier, segmentor).

    Args:
        owner (str): The model's name, for the error message.
        backbone (nn.Module): The backbone whose blocks are sampled.

    Returns:
        list[float]: The per-block rates.

    Raises:
        ValueError: When no block has a positive rate: all submodels would
            be the same network.
    """
    rates = get_drop_path_rates(backbone)
    if max(rates, default=0.0) <= 0.0:
        raise ValueError(
            f'{owner}: the backbone {type(backbone).__name__} has no '
            'stochastic depth (model.backbone.drop_path_rate is 0 or it has '
            'no DropPath), so all submodels would be identical. Set '
            'model.backbone.drop_path_rate > 0 (the paper uses 0.05-0.45).')
    return rates
