"""Residual branches computed only on the samples that keep them.

Per-sample stochastic depth (Huang et al., 2016, as in timm's ``DropPath``)
computes a residual branch for the whole batch and multiplies the dropped
rows by zero. Cosub (Touvron et al., CVPR 2023, Sec. 3) doubles the batch,
so that waste doubles too; the paper instead computes each branch only on
the rows that keep it. :func:`drop_path_add` does that: it draws the same
per-sample keep mask as mmcv's ``DropPath`` (one ``torch.rand`` value per
sample, in the same order, so a seeded run draws the same submodels; timm's
``DropPath`` through its ``keep_mask`` argument), runs the branch
on the kept rows and adds them back scaled by ``1 / keep_prob`` with
``index_add``. The result equals ``x + DropPath(branch(x))`` up to float
rounding; backward flows only through the kept rows.

Not for branches with BatchNorm (RegNet, XCiT's LPI): their batch statistics
would then cover only the kept rows, which changes the function.

In a cosub step the decisions come from a
:class:`~cosub_mm.models.drop_path.SubmodelPlan` drawn before the forward
(``plan=``): the branch then only gathers and scatters rows, and computes
once for the identical copies of an image the plan says are twins.
"""
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, Optional

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from .plan import BranchPlan

__all__ = [
    'sample_keep_mask', 'timm_keep_mask', 'keep_mask_of', 'drop_path_add',
    'drop_path_disabled'
]


def sample_keep_mask(x: Tensor, drop_prob: float) -> Tensor:
    """Draw ``DropPath``'s per-sample keep mask: a bool vector of len(x).

    Draws ``len(x)`` uniforms exactly as mmcv's ``drop_path`` does
    (``floor(keep_prob + U[0, 1))``), so a seeded generator yields the same
    mask for the masked and the efficient implementation. timm's
    ``drop_path`` draws Bernoulli variables instead:
    :func:`~cosub_mm.models.drop_path.timm_keep_mask`.
    """
    keep_prob = 1.0 - drop_prob
    shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
    rand = keep_prob + torch.rand(shape, dtype=x.dtype, device=x.device)
    return rand.floor().view(-1).bool()


def timm_keep_mask(x: Tensor, drop_prob: float) -> Tensor:
    """Draw timm's ``drop_path`` keep mask: a bool vector of ``len(x)``.

    timm draws one Bernoulli variable per sample
    (``x.new_empty((N, 1, ...)).bernoulli_(keep_prob)``), not mmcv's
    ``floor(keep_prob + U[0, 1))``: the same distribution, other numbers
    from the same seed.
    """
    shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
    return x.new_empty(shape).bernoulli_(1.0 - drop_prob).view(-1).bool()


def keep_mask_of(drop: nn.Module) -> Callable[[Tensor, float], Tensor]:
    """The keep-mask draw of a drop-path module: timm's or mmcv's."""
    return timm_keep_mask if type(drop).__module__.startswith('timm') \
        else sample_keep_mask


def drop_path_add(x: Tensor,
                  branch: Callable[[Tensor], Tensor],
                  drop_prob: float,
                  training: bool,
                  keep_mask: Callable[[Tensor, float],
                                      Tensor] = sample_keep_mask,
                  plan: Optional['BranchPlan'] = None) -> Tensor:
    """Return ``x + DropPath(branch(x))``, running ``branch`` on kept rows.

    Args:
        x (Tensor): Block input, batch first; ``branch(x)`` has its shape.
        branch (callable): The residual branch *without* its drop path.
            It must treat samples independently (no BatchNorm).
        drop_prob (float): Probability that a sample drops the branch.
        training (bool): Stochastic depth acts only in training.
        keep_mask (callable): ``keep_mask(x, drop_prob)``, the bool keep
            mask of the rows, drawn as the block's own drop-path module
            draws it (:func:`keep_mask_of`). Defaults to
            :func:`sample_keep_mask` (mmcv's draw).
        plan (BranchPlan, optional): This branch's entry of the step's
            :class:`~cosub_mm.models.drop_path.SubmodelPlan`: the rows are
            taken from it instead of drawn, and twins' rows get the result
            computed for their copy 0.

    Returns:
        Tensor: The block output.
    """
    if not training or drop_prob <= 0.0 and plan is None:
        return x + branch(x)
    if plan is not None:
        if plan.rows != x.shape[0] or plan.drop_prob != drop_prob:
            raise RuntimeError(
                f'drop_path_add: the submodel plan expected {plan.rows} rows '
                f'at rate {plan.drop_prob:g}, the branch has {x.shape[0]} at '
                f'{drop_prob:g}: the forward visits the branches of '
                f'{type(plan.block).__name__} in another order than '
                'planned_branches()')
        # No special case for zero or all rows: one graph for every draw.
        # Zero rows still give the parameters zero gradients (not None),
        # which AdamW applies and DDP waits for, as in the masked form.
        scale = 1.0 / (1.0 - drop_prob)
        if torch.compiler.is_compiling():
            return _scatter_free_add(x, branch, scale, plan)
        out = branch(x.index_select(0, plan.compute)).to(x.dtype)
        y = x.index_add(0, plan.compute, out, alpha=scale)
        # y is new and no backward saved it: the twins are written in place
        # rather than into a second copy of the whole batch
        return y.index_add_(0, plan.copies,
                            out.index_select(0, plan.sources), alpha=scale)
    keep_prob = 1.0 - drop_prob
    keep = keep_mask(x, drop_prob)
    idx = keep.nonzero().view(-1)
    if idx.numel() == 0:
        # Every sample drops the branch. The masked form still gives its
        # parameters zero gradients, which AdamW applies (decay, moments)
        # and DDP waits for; one row times zero keeps that, almost free.
        return x + branch(x[:1]).sum() * 0.0
    if idx.numel() == x.shape[0]:
        return x + branch(x) / keep_prob
    out = branch(x.index_select(0, idx)).to(x.dtype)
    return x.index_add(0, idx, out, alpha=1.0 / keep_prob)


class _DistinctRows(torch.autograd.Function):
    """``x.index_select(0, idx)`` for indices that never repeat.

    Its gradient writes the rows back (``index_copy``) instead of adding
    them (``index_add``, which inductor lowers to atomic adds).
    """

    @staticmethod
    def forward(ctx, x: Tensor, idx: Tensor) -> Tensor:
        ctx.save_for_backward(idx)
        ctx.x_shape = x.shape
        return x.index_select(0, idx)

    @staticmethod
    def backward(ctx, grad: Tensor):
        idx, = ctx.saved_tensors
        return grad.new_zeros(ctx.x_shape).index_copy(0, idx, grad), None


def _scatter_free_add(x: Tensor, branch: Callable[[Tensor], Tensor],
                      scale: float, plan: 'BranchPlan') -> Tensor:
    """The planned ``drop_path_add`` for a compiled graph.

    The same function as the eager form, built from gathers and writes
    only: every row index of the plan occurs once (the twins of each copy
    read their copy 0 once), so no gradient or result needs an atomic add.
    """
    out = branch(_DistinctRows.apply(x, plan.compute)).to(x.dtype)
    update = x.new_zeros(x.shape).index_copy(0, plan.compute, out)
    if plan.num_copies > 1:
        twins = _DistinctRows.apply(out, plan.twin_sources)
        update = update.index_copy(
            0, plan.copies,
            twins.repeat((plan.num_copies - 1, ) + (1, ) * (x.ndim - 1)))
    return x + update * scale


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
