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

Cosub's batch is k stacked copies of the same images, and the copies of an
image hold the same activations until the first branch that one copy keeps
and another drops (at drop rate p, a branch keeps them equal with
probability ``(1-p)^k + p^k``). Inside :func:`shared_copies`,
:func:`drop_path_add` computes such a branch once per image and adds the
result to every copy: the same function and the same gradients (the copies
share every activation upstream, so the backward is linear in how their
gradients are split), with less compute, the more so the lower the rate.
"""
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator, Optional

import torch
from torch import Tensor, nn

__all__ = [
    'sample_keep_mask', 'drop_path_add', 'drop_path_disabled',
    'shared_copies', 'CopyTracker'
]


class CopyTracker:
    """Which images' k stacked copies still hold identical activations.

    Row ``j * n + i`` of the batch is copy ``j`` of image ``i``. An image's
    copies are *twins* while every branch so far was kept by all of them or
    dropped by all of them, and their rows compare equal where a branch is
    about to be shared (which also catches any randomness outside
    :func:`drop_path_add`, e.g. a functional dropout).

    Args:
        num_copies (int): k, the number of stacked copies.

    Attributes:
        computed_rows (int): Rows the branches ran on so far.
        kept_rows (int): Rows that kept their branch (what the unshared
            efficient form computes); ``computed_rows / kept_rows`` is the
            compute that sharing leaves.
    """

    def __init__(self, num_copies: int) -> None:
        if num_copies < 2:
            raise ValueError(f'num_copies must be >= 2, got {num_copies}')
        self.num_copies = num_copies
        self.twins: Optional[Tensor] = None
        self.computed_rows = 0
        self.kept_rows = 0

    def update(self, x: Tensor, keep: Tensor,
               share: bool) -> Optional[Tensor]:
        """Record one branch's keep mask; pick the images to compute once.

        Args:
            x (Tensor): The branch input (k * n rows).
            keep (Tensor): Its bool keep mask (k * n,).
            share (bool): Whether the caller may compute the branch once for
                twins (False under activation checkpointing, whose replay
                runs outside the tracker).

        Returns:
            Tensor | None: Bool (n,), True for the images whose branch runs
            once for all copies; None if there is none.
        """
        k = self.num_copies
        if x.shape[0] % k or (self.twins is not None
                              and self.twins.numel() * k != x.shape[0]):
            self.twins = torch.zeros(0, dtype=torch.bool)  # not k copies
            return None
        n = x.shape[0] // k
        if self.twins is None:
            self.twins = torch.ones(n, dtype=torch.bool, device=x.device)
        keep = keep.view(k, n)
        all_keep = keep.all(dim=0)
        shared = None
        candidates = self.twins & all_keep
        if share and bool(candidates.any()):
            rows = x.detach().reshape(k, n, -1)[:, candidates]
            equal = (rows[1:] == rows[:1]).all(dim=2).all(dim=0)
            shared = torch.zeros_like(candidates)
            shared[candidates] = equal
            self.twins = self.twins & ~(candidates & ~shared)
        self.twins = self.twins & (all_keep | ~keep.any(dim=0))
        return shared if shared is not None and bool(shared.any()) else None


_TRACKER: ContextVar[Optional[CopyTracker]] = ContextVar(
    'cosub_mm_copy_tracker', default=None)


@contextmanager
def shared_copies(num_copies: int) -> Iterator[CopyTracker]:
    """Declare the batch to be ``num_copies`` stacked copies of its images.

    Within the context, :func:`drop_path_add` computes a branch once for an
    image whose copies are twins (see :class:`CopyTracker`) and all keep
    it. Only valid when every stochastic choice of the network goes through
    :func:`drop_path_add` (no dropout, no masked drop path elsewhere):
    :class:`~cosub_mm.models.CosubClassifier` checks that before entering.

    Args:
        num_copies (int): k; row ``j * n + i`` is copy ``j`` of image ``i``.

    Yields:
        CopyTracker: The state, with row counts for logging.
    """
    tracker = CopyTracker(num_copies)
    token = _TRACKER.set(tracker)
    try:
        yield tracker
    finally:
        _TRACKER.reset(token)


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


def drop_path_add(x: Tensor,
                  branch: Callable[[Tensor], Tensor],
                  drop_prob: float,
                  training: bool,
                  share: bool = True,
                  keep_mask: Callable[[Tensor, float],
                                      Tensor] = sample_keep_mask) -> Tensor:
    """Return ``x + DropPath(branch(x))``, running ``branch`` on kept rows.

    Args:
        x (Tensor): Block input, batch first; ``branch(x)`` has its shape.
        branch (callable): The residual branch *without* its drop path.
            It must treat samples independently (no BatchNorm).
        drop_prob (float): Probability that a sample drops the branch.
        training (bool): Stochastic depth acts only in training.
        share (bool): Inside :func:`shared_copies`, compute the branch once
            for the identical copies of an image. Pass False where the
            branch is re-run later outside the context (activation
            checkpointing). Defaults to True.
        keep_mask (callable): ``keep_mask(x, drop_prob)``, the bool keep
            mask of the rows, drawn as the block's own drop-path module
            draws it (timm's draws differently from mmcv's; see
            :func:`~cosub_mm.models.drop_path.timm_keep_mask`). Defaults to
            :func:`sample_keep_mask` (mmcv's draw).

    Returns:
        Tensor: The block output.
    """
    tracker = _TRACKER.get()
    if not training or (drop_prob <= 0.0 and tracker is None):
        return x + branch(x)
    if drop_prob <= 0.0:
        # every row keeps it (and, like DropPath, no random number is drawn)
        keep_prob = 1.0
        keep = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    else:
        keep_prob = 1.0 - drop_prob
        keep = keep_mask(x, drop_prob)
    shared = tracker.update(x, keep, share) if tracker is not None else None
    compute = keep
    if shared is not None:
        compute = keep.view(tracker.num_copies, -1).clone()
        compute[1:, shared] = False  # copy 0 computes for its twins
        compute = compute.view(-1)
    idx = compute.nonzero().view(-1)
    if tracker is not None:
        tracker.computed_rows += idx.numel()
        tracker.kept_rows += int(keep.sum())
    if idx.numel() == 0:
        # Every sample drops the branch. The masked form still gives its
        # parameters zero gradients, which AdamW applies (decay, moments)
        # and DDP waits for; one row times zero keeps that, almost free.
        return x + branch(x[:1]).sum() * 0.0
    if idx.numel() == x.shape[0]:
        return x + branch(x) / keep_prob
    out = branch(x.index_select(0, idx)).to(x.dtype)
    x = x.index_add(0, idx, out, alpha=1.0 / keep_prob)
    if shared is not None:
        images = shared.nonzero().view(-1)
        n = shared.numel()
        offsets = torch.arange(
            n, n * tracker.num_copies, n, device=x.device).view(-1, 1)
        rows = torch.searchsorted(idx, images)  # their rows in ``out``
        x.index_add_(0, (offsets + images).view(-1),
                     out.index_select(0, rows).repeat(
                         tracker.num_copies - 1, *([1] * (out.ndim - 1))),
                     alpha=1.0 / keep_prob)
    return x


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
