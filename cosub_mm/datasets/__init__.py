from .check_seg_annotation import CheckSegAnnotation
from .transforms import *  # noqa: F401,F403
from .transforms import __all__ as _transforms_all

__all__ = ['CheckSegAnnotation'] + list(_transforms_all)
