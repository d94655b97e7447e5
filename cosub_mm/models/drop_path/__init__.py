"""Stochastic depth for cosub: per-block rates, the efficient form that
computes a residual branch only on the samples that keep it, and the block
twins that use it.

- :mod:`.rates`: find and set the drop-path rate of each block of any
  backbone (:func:`set_drop_path_rates`, :func:`prepare_submodels`).
- :mod:`.efficient`: :func:`drop_path_add`, a residual branch computed on
  the rows that keep it, and the keep-mask draws.
- :mod:`.plan`: every drop decision of a cosub step drawn at once
  (:func:`draw_submodel_plan`), with the identical copies' sharing derived
  from it.
- :mod:`.blocks`: efficient twins of mmpretrain's blocks, the table of
  convertible block types (:func:`register_efficient_block`) and
  :func:`enable_efficient_drop_path`.
- :mod:`.timm_blocks`: the twin of timm's ViT ``Block``, registered when
  timm is installed (``pip install cosub_mm[timm]``).
"""
from importlib.util import find_spec

from .blocks import (EFFICIENT_BLOCKS, EfficientBlock,
                     EfficientConvNeXtBlock,
                     EfficientDeiT3TransformerEncoderLayer,
                     EfficientSwinBlock, EfficientTransformerEncoderLayer,
                     copy_sharing_blocker, enable_efficient_drop_path,
                     is_efficient_block, register_efficient_block)
from .efficient import (drop_path_add, drop_path_disabled, keep_mask_of,
                        sample_keep_mask, timm_keep_mask)
from .plan import (BranchPlan, SubmodelPlan, block_plans, draw_submodel_plan,
                   planned_branches)
from .rates import (block_drop_paths, get_drop_path_rates, is_drop_path,
                    prepare_submodels, set_drop_path_rates)

# timm is optional: without it there is no timm Block to convert
HAS_TIMM = find_spec('timm') is not None
if HAS_TIMM:
    from .timm_blocks import EfficientTimmBlock

__all__ = [
    # rates
    'is_drop_path', 'block_drop_paths', 'get_drop_path_rates',
    'set_drop_path_rates', 'prepare_submodels',
    # efficient
    'drop_path_add', 'drop_path_disabled', 'sample_keep_mask',
    'timm_keep_mask', 'keep_mask_of',
    # plan
    'BranchPlan', 'SubmodelPlan', 'draw_submodel_plan', 'block_plans',
    'planned_branches',
    # blocks
    'EfficientTransformerEncoderLayer',
    'EfficientDeiT3TransformerEncoderLayer', 'EfficientSwinBlock',
    'EfficientConvNeXtBlock', 'EfficientBlock', 'EFFICIENT_BLOCKS',
    'register_efficient_block', 'is_efficient_block',
    'enable_efficient_drop_path', 'copy_sharing_blocker'
] + (['EfficientTimmBlock'] if HAS_TIMM else [])
