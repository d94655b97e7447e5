"""Write the trained backbone for downstream (mmseg) finetuning."""
import os.path as osp
import time
from collections import OrderedDict

import torch
from mmengine.dist import master_only
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from cosub_mm.fileio import atomic_save
from cosub_mm.registry import HOOKS
from cosub_mm.version import __version__

__all__ = ['BackboneExportHook']


@HOOKS.register_module()
class BackboneExportHook(Hook):
    """After training, save ``{work_dir}/backbone.pth``.

    The file holds ``state_dict`` (the model's ``backbone.*`` tensors, on
    CPU, keys unchanged) and ``meta`` (plain strings and numbers), so it
    loads weights-only (:func:`cosub_mm.fileio.safe_load`) and mmseg reads it
    with ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=
    'backbone.')``. Only the main process writes.

    Args:
        filename (str): File name inside ``work_dir``.
            Defaults to 'backbone.pth'.
        prefix (str): Keys to keep. Defaults to 'backbone.'.

    Example:
        >>> custom_hooks = [dict(type='cosub_mm.BackboneExportHook')]
    """

    priority = 'VERY_LOW'

    def __init__(self, filename: str = 'backbone.pth',
                 prefix: str = 'backbone.') -> None:
        if not filename or osp.basename(filename) != filename:
            raise ValueError('BackboneExportHook: filename must be a plain '
                             f'file name inside work_dir, got {filename!r}')
        self.filename = filename
        self.prefix = prefix

    @master_only
    def after_train(self, runner) -> None:
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        state = OrderedDict(
            (k, v.detach().cpu().clone())
            for k, v in model.state_dict().items() if k.startswith(self.prefix))
        if not state:
            raise KeyError(
                f'BackboneExportHook: the model {type(model).__name__} has '
                f'no parameters starting with {self.prefix!r}')
        backbone = getattr(model, 'backbone', None)
        meta = dict(
            cosub_mm_version=__version__,
            model_type=type(model).__name__,
            backbone_type=type(backbone).__name__ if backbone is not None else '',
            prefix=self.prefix,
            epoch=int(runner.epoch),
            iter=int(runner.iter),
            experiment_name=str(runner.experiment_name),
            time=time.strftime('%Y-%m-%d %H:%M:%S'))
        path = osp.join(runner.work_dir, self.filename)
        # temp file + fsync + rename: a kill never leaves a torn export
        atomic_save(dict(state_dict=state, meta=meta), path)
        runner.logger.info(f'BackboneExportHook: wrote {len(state)} tensors '
                           f'of {meta["backbone_type"]} to {path}')
