"""cosub_mm: submodel co-training (cosub) for OpenMMLab vision backbones.

``import cosub_mm`` first applies the stack fixes of :mod:`cosub_mm.stack`
(they must precede any import of mmseg or mmpretrain), then registers the
toolkit's modules in the ``cosub_mm`` registries. Checkpoint IO
(weights-only loading, atomic writes) is :mod:`cosub_mm.fileio`.
"""
from . import fileio, stack

stack.apply_all()

from . import datasets, engine, models  # noqa: E402,F401
from .version import __version__  # noqa: E402

__all__ = ['__version__', 'datasets', 'engine', 'fileio', 'models', 'stack']
