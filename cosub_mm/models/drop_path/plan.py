"""The submodels of a cosub step, drawn at once before the forward.

Cosub trains ``k`` random submodels per image (Touvron et al., *Co-training
2^L Submodels*, CVPR 2023): each residual branch is dropped for a row of the
stacked batch with the block's drop rate. Drawing those decisions branch by
branch inside the forward costs, on a GPU, a device-to-host sync per branch
(``nonzero()`` to size the kept rows), and each sync is a graph break under
``torch.compile``. :func:`draw_submodel_plan` instead draws every decision of
the step as one ``(branches, rows)`` tensor on the device, copies it to the
host once, and derives there what each branch needs: the rows it computes
and, for the copies of an image that are still identical, the rows that
receive a result computed once (*twins*: every branch so far was shared by
all copies or dropped by all of them, so their activations are equal by
construction). Inside :meth:`SubmodelPlan.active`, each efficient block takes
its entries with :func:`block_plans` and
:func:`~cosub_mm.models.drop_path.drop_path_add` only gathers and scatters
rows: no draw, no sync, one graph for the whole backbone.

The draws are those of the masked form: mmcv's ``DropPath`` draws
``len(x)`` uniforms per branch in forward order and a CPU generator gives the
same numbers for one ``(branches, rows)`` call, so a seeded plan draws the
same submodels as the masked network (timm's Bernoulli draws are made per
branch, as timm makes them). Only valid when no other randomness acts inside
the backbone: :class:`~cosub_mm.models.CosubStep` checks that
(:func:`~cosub_mm.models.drop_path.copy_sharing_blocker`) before drawing.
"""
from contextlib import contextmanager
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from .efficient import keep_mask_of, sample_keep_mask
from .rates import drop_rate

__all__ = [
    'BranchPlan', 'SubmodelPlan', 'draw_submodel_plan', 'block_plans',
    'planned_branches'
]


class BranchPlan(NamedTuple):
    """What one residual branch computes in a planned step.

    Attributes:
        block (nn.Module): The efficient block the branch belongs to.
        drop_prob (float): Its drop rate.
        rows (int): Rows of the stacked batch (k * n).
        compute (Tensor): Rows to run the branch on, ascending (int64).
        copies (Tensor): Rows of twin copies that receive a result computed
            for their copy 0.
        sources (Tensor): For each of ``copies``, its position in
            ``compute``.
        num_copies (int): k; ``copies`` holds the twin rows of copy 1, then
            of copy 2, ...
        twin_sources (Tensor): ``sources`` of one copy (the same for each):
            every position at most once.
    """
    block: nn.Module
    drop_prob: float
    rows: int
    compute: Tensor
    copies: Tensor
    sources: Tensor
    num_copies: int
    twin_sources: Tensor


def planned_branches(model: nn.Module) -> List[Tuple[nn.Module, nn.Module]]:
    """The residual branches of ``model``'s efficient blocks, forward order.

    Each efficient block lists its branches' drop-path modules with
    ``branch_drop_paths()``; the blocks are taken in module order, which is
    the forward order of the sequential backbones cosub_mm converts.

    Returns:
        list: ``(block, drop_path_module)`` per branch.
    """
    from .blocks import is_efficient_block
    return [(block, drop) for block in model.modules()
            if is_efficient_block(block)
            for drop in block.branch_drop_paths()]


class SubmodelPlan:
    """The drop decisions of one cosub step and what follows from them.

    Args:
        branches (list): ``(block, drop_path_module)`` per branch, in
            forward order (:func:`planned_branches`).
        keep (np.ndarray): Bool ``(branches, k * n)``: row ``j * n + i``
            (copy ``j`` of image ``i``) keeps the branch.
        num_copies (int): k.
        share (bool): Compute a branch once for the twin copies of an image
            (never in a block with activation checkpointing, whose replay
            runs after the plan).
        device: Where the index tensors go.
    """

    def __init__(self, branches: List[Tuple[nn.Module, nn.Module]],
                 keep: np.ndarray, num_copies: int, share: bool,
                 device: torch.device) -> None:
        k = num_copies
        rows = keep.shape[1]
        if rows % k:
            raise ValueError(f'SubmodelPlan: {rows} rows are not {k} copies')
        n = rows // k
        self.num_copies, self.keep = k, keep
        twins = np.ones(n, dtype=bool)
        #: images whose copies were still twins before each branch
        self.twins_before: List[np.ndarray] = []
        parts: List[np.ndarray] = []
        sizes: List[Tuple[int, int]] = []
        for (block, _), kb in zip(branches, keep):
            kb = kb.reshape(k, n)
            all_keep, any_keep = kb.all(0), kb.any(0)
            self.twins_before.append(twins.copy())
            shared = twins & all_keep if (
                share and not getattr(block, 'with_cp', False)) else \
                np.zeros(n, dtype=bool)
            compute = kb.copy()
            compute[1:, shared] = False  # copy 0 computes for its twins
            idx = np.flatnonzero(compute)
            images = np.flatnonzero(shared)
            copies = (np.arange(1, k)[:, None] * n + images).reshape(-1)
            sources = np.tile(np.searchsorted(idx, images), k - 1)
            parts += [idx, copies, sources]
            sizes.append((idx.size, copies.size))
            # stay twins only where identical by construction
            twins &= shared | ~any_keep
        self.twins_after = twins
        flat = torch.from_numpy(np.concatenate(parts).astype(np.int64)
                                if parts else np.zeros(0, np.int64))
        if flat.device != torch.device(device):
            # one host-to-device copy for all index tensors
            flat = flat.pin_memory().to(device, non_blocking=True) \
                if torch.device(device).type == 'cuda' else flat.to(device)
        self.branches: List[BranchPlan] = []
        start = 0
        for (block, drop), (c, s) in zip(branches, sizes):
            views = []
            for size in (c, s, s):
                views.append(flat[start:start + size])
                start += size
            self.branches.append(
                BranchPlan(block, drop_rate(drop), rows, *views, k,
                           views[2][:s // (k - 1) if k > 1 else 0]))
        self._summary = self._summarise()
        #: :meth:`summary` as 0-d tensors, made here so that a compiled step
        #: reads them as graph inputs
        self.log_tensors = {key: torch.tensor(value)
                            for key, value in self._summary.items()}

    @property
    def kept_rows(self) -> int:
        """Rows that keep their branch, summed over branches."""
        return int(self.keep.sum())

    @property
    def computed_rows(self) -> int:
        """Rows the branches run on (fewer than kept where twins share)."""
        return sum(int(b.compute.numel()) for b in self.branches)

    def summary(self) -> Dict[str, float]:
        """What this step trained, for the log.

        Returns:
            dict: ``submodels`` (distinct submodels among the rows: distinct
            columns of the keep matrix), ``depth`` (mean fraction of
            branches a submodel keeps) and ``shared`` (fraction of kept rows
            not computed because a twin's result was reused).
        """
        return dict(self._summary)

    def _summarise(self) -> Dict[str, float]:
        if self.keep.size == 0:
            return dict(submodels=1.0, depth=1.0, shared=0.0)
        columns = np.packbits(self.keep, axis=0).T
        distinct = len({c.tobytes() for c in columns})
        kept = self.kept_rows
        return dict(submodels=float(distinct),
                    depth=float(self.keep.mean()),
                    shared=1.0 - self.computed_rows / kept if kept else 0.0)

    @contextmanager
    def active(self) -> Iterator['SubmodelPlan']:
        """Make the efficient blocks follow this plan for the duration."""
        if _ACTIVE:
            raise RuntimeError('SubmodelPlan: another plan is already active '
                               '(nested cosub steps are not supported)')
        slots: Dict[int, int] = {}
        for i, plan in enumerate(self.branches):
            slots.setdefault(id(plan.block), i)
        for plan in self.branches:
            plan.block._cosub_plan_slot = slots[id(plan.block)]
        _ACTIVE.extend(self.branches)
        try:
            yield self
        finally:
            _ACTIVE.clear()


# The active plan's branches. A module-level list (not a ContextVar) because
# torch.compile traces reading it: its tensors become graph inputs, guarded
# by their metadata, instead of breaking the graph.
_ACTIVE: List[BranchPlan] = []


def block_plans(block: nn.Module, num: int) -> Tuple[Optional[BranchPlan],
                                                     ...]:
    """The active plan's entries for ``block``'s ``num`` branches.

    An efficient block calls this at the top of its forward (before any
    activation checkpointing, whose replay in backward then reuses them).

    Returns:
        tuple: ``num`` :class:`BranchPlan`, or ``num`` None when no plan is
        active or the plan does not cover ``block``.
    """
    slot = getattr(block, '_cosub_plan_slot', None)
    if not _ACTIVE or slot is None or slot + num > len(_ACTIVE) or \
            _ACTIVE[slot].block is not block:
        return (None, ) * num
    return tuple(_ACTIVE[slot:slot + num])


@torch._dynamo.disable
def draw_submodel_plan(model: nn.Module, rows: int, num_copies: int,
                       device: torch.device,
                       share: bool = True) -> SubmodelPlan:
    """Draw every drop decision of a cosub step at once.

    Args:
        model (nn.Module): The backbone, efficient blocks enabled.
        rows (int): Rows of the stacked batch, k * n.
        num_copies (int): k.
        device: The device the batch is on; the decisions are drawn with its
            default generator, as the masked form draws them.
        share (bool): Compute a branch once for twin copies.

    Returns:
        SubmodelPlan: The step's plan (one device-to-host copy made).
    """
    branches = planned_branches(model)
    rates = [drop_rate(d) for _, d in branches]
    draws = [keep_mask_of(d) for _, d in branches]
    keep = torch.ones(len(branches), rows, dtype=torch.bool, device=device)
    # A branch at rate 0 draws nothing (as DropPath); each run of branches
    # with mmcv's draw takes one torch.rand call, timm's draw is made per
    # branch as timm makes it.
    i = 0
    while i < len(branches):
        if rates[i] <= 0:
            i += 1
        elif draws[i] is sample_keep_mask:
            j = i
            while j < len(branches) and (rates[j] <= 0
                                         or draws[j] is sample_keep_mask):
                j += 1
            drawn = [b for b in range(i, j) if rates[b] > 0]
            # 1 - p in double, then float32: what DropPath's scalar add does
            keep_prob = torch.tensor([1.0 - rates[b] for b in drawn],
                                     dtype=torch.float64).float()
            u = torch.rand(len(drawn), rows, dtype=torch.float32,
                           device=device)
            keep[drawn] = (keep_prob.to(device).view(-1, 1) + u).floor() \
                .bool()
            i = j
        else:
            dummy = torch.empty(rows, dtype=torch.float32, device=device)
            keep[i] = draws[i](dummy, rates[i])
            i += 1
    return SubmodelPlan(branches, keep.cpu().numpy(), num_copies, share,
                        device)
