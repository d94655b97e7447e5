from .check_seg_annotation import CheckSegAnnotation
from .fashion_scenes import (STUFF_TEXTURES, THING_CLASSES,
                             FashionScenesDataset)
from .sample_seeds import (SampleSeedDataset, SampleSeedSampler,
                           SeededIndex, sample_seed)
from .transforms import *  # noqa: F401,F403
from .transforms import __all__ as _transforms_all

__all__ = [
    'CheckSegAnnotation', 'FashionScenesDataset', 'SampleSeedDataset',
    'SampleSeedSampler', 'SeededIndex', 'STUFF_TEXTURES', 'THING_CLASSES',
    'sample_seed'
] + list(_transforms_all)
