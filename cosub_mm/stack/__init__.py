"""Fixes of the pinned OpenMMLab stack, applied by ``import cosub_mm``.

One module per concern:

* :mod:`.imports`: torchvision's CPU ops schema, a stand-in ``mmcv.ops``
  under mmcv-lite;
* :mod:`.checkpoints`: mmengine's checkpoint loading made weights-only for
  local files, URLs and ``--resume`` (opt-in ``resume_unsafe``), plain
  checkpoints that load with ``torch.load`` anywhere, ``HistoryBuffer``
  pickling, atomic checkpoint writes (all through :mod:`cosub_mm.fileio`),
  a resume that refuses a damaged pointer or another model's checkpoint;
* :mod:`.distributed`: CPU-only DDP (no ``torch.cuda.set_device``, gloo);
* :mod:`.datasets`: an error naming the folder of an empty dataset;
* :mod:`.deit3`: DeiT III's FFN normalised with ``ln2`` (CHANGES NUMERICS of
  mmpretrain 1.2.0's DeiT III, see :func:`.deit3.fix_deit3_ffn_norm`); the
  authors' FFN-Linear and ``cls_token`` init, only where a config's
  ``init_cfg`` lists ``dict(type='cosub_mm.DeiT3AuthorsInit')``
  (:func:`.deit3.fix_deit3_authors_init`);
* :mod:`.input_channels`: a gray (1-channel) pretrained patch embedding
  loaded into an RGB model and back, instead of left at random init;
* :mod:`.compile`: mmengine's ``compile = True`` with the optimizer step
  kept out of Dynamo.

Each fix is guarded so that it does nothing where it is not needed, and each
docstring names the exact error it fixes. They must run before ``mmseg`` or
``mmpretrain`` modules are imported, which is why ``cosub_mm/__init__.py``
calls :func:`apply_all` first.
"""
from typing import List

from .checkpoints import (fix_atomic_checkpoints, fix_checkpoint_loading,
                          fix_history_buffer_pickling, fix_plain_checkpoints,
                          fix_resume, fix_url_checkpoint_loading)
from .compile import fix_compiled_optimizer_step
from .datasets import fix_empty_dataset_error
from .deit3 import fix_deit3_authors_init, fix_deit3_ffn_norm
from .distributed import fix_cpu_distributed
from .imports import fix_mmcv_lite_ops, fix_torchvision_cpu_ops
from .input_channels import fix_patch_embed_input_channels

__all__ = [
    'apply_all', 'FIXES', 'fix_torchvision_cpu_ops', 'fix_mmcv_lite_ops',
    'fix_history_buffer_pickling', 'fix_checkpoint_loading',
    'fix_cpu_distributed', 'fix_atomic_checkpoints',
    'fix_empty_dataset_error', 'fix_url_checkpoint_loading',
    'fix_plain_checkpoints', 'fix_resume', 'fix_deit3_ffn_norm',
    'fix_deit3_authors_init', 'fix_patch_embed_input_channels',
    'fix_compiled_optimizer_step'
]

# The order in which apply_all applies them.
FIXES = (fix_torchvision_cpu_ops, fix_mmcv_lite_ops,
         fix_history_buffer_pickling, fix_checkpoint_loading,
         fix_cpu_distributed, fix_atomic_checkpoints, fix_empty_dataset_error,
         fix_url_checkpoint_loading, fix_plain_checkpoints, fix_resume,
         fix_deit3_ffn_norm, fix_deit3_authors_init,
         fix_patch_embed_input_channels, fix_compiled_optimizer_step)

_applied: List[str] = []


def apply_all() -> List[str]:
    """Apply every fix needed on this stack; return the names applied."""
    for fix in FIXES:
        if fix.__name__ not in _applied and fix():
            _applied.append(fix.__name__)
    return list(_applied)
