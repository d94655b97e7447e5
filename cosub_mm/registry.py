"""Registries of cosub_mm.

Every registry has scope ``cosub_mm`` and a parent among mmengine's root
registries, so ``type='cosub_mm.X'`` resolves from an mmpretrain-scoped and
from an mmseg-scoped config alike. A registry parented to mmpretrain's would
not be reachable from mmseg's scope.

Example:
    >>> from cosub_mm.registry import MODELS
    >>> @MODELS.register_module()
    ... class MyLoss(torch.nn.Module): ...
    >>> # in any config: loss=dict(type='cosub_mm.MyLoss')
"""
from typing import Optional

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import \
    WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

__all__ = [
    'MODELS', 'HOOKS', 'TRANSFORMS', 'DATASETS', 'DATA_SAMPLERS', 'METRICS',
    'EVALUATOR', 'OPTIMIZERS', 'OPTIM_WRAPPERS', 'OPTIM_WRAPPER_CONSTRUCTORS',
    'PARAM_SCHEDULERS', 'RUNNERS', 'LOOPS', 'VISUALIZERS',
    'WEIGHT_INITIALIZERS'
]

SCOPE = 'cosub_mm'


def _child(name: str,
           parent: Registry,
           location: Optional[str] = None) -> Registry:
    """A ``cosub_mm`` registry under ``parent``.

    ``location`` is the package whose import registers the members, so
    ``type='cosub_mm.X'`` works before anything imported it. Registries
    that cosub_mm registers nothing into take none: a location that does
    not import would fail every build that goes through the registry.
    Give one its location along with its first member.
    """
    locations = [f'cosub_mm.{location}'] if location else []
    return Registry(name, parent=parent, scope=SCOPE, locations=locations)


MODELS = _child('model', MMENGINE_MODELS, 'models')
HOOKS = _child('hook', MMENGINE_HOOKS, 'engine')
TRANSFORMS = _child('transform', MMENGINE_TRANSFORMS, 'datasets')
DATASETS = _child('dataset', MMENGINE_DATASETS, 'datasets')
DATA_SAMPLERS = _child('data sampler', MMENGINE_DATA_SAMPLERS, 'datasets')
METRICS = _child('metric', MMENGINE_METRICS)
EVALUATOR = _child('evaluator', MMENGINE_EVALUATOR)
OPTIMIZERS = _child('optimizer', MMENGINE_OPTIMIZERS)
OPTIM_WRAPPERS = _child('optim_wrapper', MMENGINE_OPTIM_WRAPPERS)
OPTIM_WRAPPER_CONSTRUCTORS = _child('optimizer wrapper constructor',
                                    MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS)
PARAM_SCHEDULERS = _child('parameter scheduler', MMENGINE_PARAM_SCHEDULERS)
RUNNERS = _child('runner', MMENGINE_RUNNERS)
LOOPS = _child('loop', MMENGINE_LOOPS)
VISUALIZERS = _child('visualizer', MMENGINE_VISUALIZERS)
# init_cfg types, e.g. dict(type='cosub_mm.DeiT3AuthorsInit')
WEIGHT_INITIALIZERS = _child('weight initializer',
                             MMENGINE_WEIGHT_INITIALIZERS, 'stack')
