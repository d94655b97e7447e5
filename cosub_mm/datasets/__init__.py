from .check_seg_annotation import CheckSegAnnotation
from .fashion_scenes import (STUFF_TEXTURES, THING_CLASSES,
                             FashionScenesDataset)
from .transforms import *  # noqa: F401,F403
from .transforms import __all__ as _transforms_all

__all__ = [
    'CheckSegAnnotation', 'FashionScenesDataset', 'STUFF_TEXTURES',
    'THING_CLASSES'
] + list(_transforms_all)
