"""Import-time fixes: torchvision's CPU ops schema and mmcv-lite's ops.

Both must run before ``torchvision``, ``mmcv.ops``, ``mmseg`` or
``mmpretrain`` is imported.
"""
import importlib.util
import os.path as osp
import sys
import types
from typing import Any, Optional

import torch

__all__ = ['fix_torchvision_cpu_ops', 'fix_mmcv_lite_ops']

# Keep the library object alive: its schemas are removed when it is freed.
_torchvision_lib: Optional[Any] = None


def _torchvision_c_loads() -> bool:
    """Return whether torchvision's compiled ``_C`` library can be loaded."""
    spec = importlib.util.find_spec('torchvision')
    if spec is None or not spec.submodule_search_locations:
        return True  # nothing to fix if torchvision is absent
    for folder in spec.submodule_search_locations:
        for name in ('_C.so', '_C.pyd'):
            path = osp.join(folder, name)
            if osp.exists(path):
                try:
                    torch.ops.load_library(path)
                    return True
                except (OSError, RuntimeError):
                    return False
    return False


def fix_torchvision_cpu_ops() -> bool:
    """Define torchvision's ``nms``/``qnms`` schemas when its ``_C`` fails.

    Fixes ``RuntimeError: operator torchvision::nms does not exist`` raised by
    ``import torchvision`` when torchvision 0.28.0 (whose ``_C.so`` links CUDA
    libraries) sits beside the CPU build of torch 2.13.0: torchvision's meta
    registrations then refer to operators that were never defined.

    Does nothing beside a CUDA torch (defining the schemas there aborts the
    process), when torchvision is already imported, or when ``_C`` loads.

    Returns:
        bool: Whether the fix was applied.
    """
    global _torchvision_lib
    if (torch.version.cuda is not None or 'torchvision' in sys.modules
            or _torchvision_lib is not None or _torchvision_c_loads()):
        return False
    lib = torch.library.Library('torchvision', 'DEF')
    lib.define('nms(Tensor dets, Tensor scores, float iou_threshold) '
               '-> Tensor')
    lib.define('qnms(Tensor dets, Tensor scores, float iou_threshold) '
               '-> Tensor')
    _torchvision_lib = lib
    return True


def _mmcv_ops_stand_in() -> types.ModuleType:
    """Build a ``mmcv.ops`` module that offers the pure-Python ops only."""
    module = types.ModuleType('mmcv.ops')
    module.__doc__ = ('cosub_mm stand-in for mmcv.ops under mmcv-lite: only '
                      'pure-Python ops are available.')
    spec = importlib.util.find_spec('mmcv')
    path = osp.join(spec.submodule_search_locations[0], 'ops',
                    'point_sample.py')
    ps_spec = importlib.util.spec_from_file_location('mmcv.ops.point_sample',
                                                     path)
    point_sample_mod = importlib.util.module_from_spec(ps_spec)
    ps_spec.loader.exec_module(point_sample_mod)
    sys.modules['mmcv.ops.point_sample'] = point_sample_mod
    module.point_sample = point_sample_mod.point_sample
    module.bilinear_grid_sample = point_sample_mod.bilinear_grid_sample

    def sigmoid_focal_loss(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(
            'sigmoid_focal_loss needs mmcv compiled ops (mmcv._ext), which '
            'mmcv-lite lacks: install the full mmcv==2.1.0 or use another '
            'loss.')

    module.sigmoid_focal_loss = sigmoid_focal_loss

    def __getattr__(name: str) -> Any:
        if name.startswith('__'):
            raise AttributeError(name)
        # ModuleNotFoundError (not AttributeError) so that mmseg's
        # ``except ModuleNotFoundError`` guards around optional heads work.
        raise ModuleNotFoundError(
            f'mmcv.ops.{name} needs mmcv compiled ops (mmcv._ext), which '
            'mmcv-lite lacks; install the full mmcv==2.1.0 to use it.')

    module.__getattr__ = __getattr__
    return module


def fix_mmcv_lite_ops() -> bool:
    """Provide a stand-in ``mmcv.ops`` under mmcv-lite.

    Fixes ``ModuleNotFoundError: No module named 'mmcv._ext'`` raised when
    mmseg 1.2.2 imports ``mmcv.ops.point_sample`` at import time
    (``mmseg/utils/mask_classification.py``, ``focal_loss.py``,
    ``san_head.py``) while only mmcv-lite, without compiled ops, is installed.

    Does nothing when mmcv is absent, when ``mmcv._ext`` exists (the full
    mmcv) or when ``mmcv.ops`` was imported already.

    Returns:
        bool: Whether the fix was applied.
    """
    if 'mmcv.ops' in sys.modules or importlib.util.find_spec('mmcv') is None:
        return False
    if importlib.util.find_spec('mmcv._ext') is not None:
        return False
    import mmcv
    module = _mmcv_ops_stand_in()
    sys.modules['mmcv.ops'] = module
    mmcv.ops = module
    return True
