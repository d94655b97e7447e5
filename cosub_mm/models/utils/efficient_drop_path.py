"""Residual branches computed only on the samples that keep them.

Per-sample stochastic depth (Huang et al., 2016, as in timm's ``DropPath``)
computes a residual branch for the whole batch and multiplies the dropped
rows by zero. Cosub (Touvron et al., CVPR 2023, Sec. 3) doubles the batch,
so that waste doubles too; the paper instead computes each branch only on
the rows that keep it. :func:`drop_path_add` does that: it draws the same
per-sample keep mask as ``DropPath`` (one ``torch.rand`` value per sample, in
the same order, so a seeded run draws the same submodels), runs the branch
on the kept rows and adds them back scaled by ``1 / keep_prob`` with
``index_add``. The result equals ``x + DropPath(branch(x))`` up to float
rounding; backward flows only through the kept rows.

Not for branches with BatchNorm (RegNet, XCiT's LPI): their batch statistics
would then cover only the kept rows, which changes the function.
"""
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

__all__ = ['sample_keep_mask', 'drop_path_add', 'drop_path_disabled']


def sample_keep_mask(x: Tensor, drop_prob: float) -> Tensor:
    """Draw ``DropPath``'s per-sample keep mask: a bool vector of len(x).

    Draws ``len(x)`` uniforms exactly as mmcv's/timm's ``drop_path`` does
    (``floor(keep_prob + U[0, 1))``), so a seeded generator yields the same
    mask for the masked and the efficient implementation.
    """
    keep_prob = 1.0 - drop_prob
    shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
    rand = keep_prob + torch.rand(shape, dtype=x.dtype, device=x.device)
    return rand.floor().view(-1).bool()


def drop_path_add(x: Tensor, branch: Callable[[Tensor], Tensor],
                  drop_prob: float, training: bool) -> Tensor:
    """Return ``x + DropPath(branch(x))``, running ``branch`` on kept rows.

    Args:
        x (Tensor): Block input, batch first; ``branch(x)`` has its shape.
        branch (callable): The residual branch *without* its drop path.
            It must treat samples independently (no BatchNorm).
        drop_prob (float): Probability that a sample drops the branch.
        training (bool): Stochastic depth acts only in training.

    Returns:
        Tensor: The block output.
    """
    if not training or drop_prob <= 0.0:
        return x + branch(x)
    keep_prob = 1.0 - drop_prob
    keep = sample_keep_mask(x, drop_prob)
    idx = keep.nonzero().view(-1)
    if idx.numel() == 0:
        # Every sample skips the block: its parameters get no gradient
        # (the masked form gives them zeros).
        return x
    if idx.numel() == x.shape[0]:
        return x + branch(x) / keep_prob
    out = branch(x.index_select(0, idx))
    return x.index_add(0, idx, out.to(x.dtype), alpha=1.0 / keep_prob)


@contextmanager
def drop_path_disabled(module: nn.Module) -> Iterator[None]:
    """Make a ``DropPath`` module the identity for the duration.

    mmpretrain puts the drop path *inside* attention/FFN modules
    (``MultiheadAttention.out_drop``, ``ShiftWindowMSA.drop``); running such
    a module as the branch of :func:`drop_path_add` must not drop twice.
    """
    if not hasattr(module, 'drop_prob'):
        yield  # nn.Identity (rate 0 at build time): nothing to disable
        return
    prob = module.drop_prob
    module.drop_prob = 0.0
    try:
        yield
    finally:
        module.drop_prob = prob
