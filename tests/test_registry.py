"""cosub_mm registries are reachable from mmpretrain- and mmseg-scoped code,
import from existing locations and build their members."""
import importlib
import re

import pytest
from mmengine.registry import DefaultScope

import cosub_mm  # noqa: F401
from conftest import make_seg_dataset
from cosub_mm import registry
from cosub_mm.datasets import (CheckSegAnnotation, FashionScenesDataset,
                               SampleSeedSampler)
from cosub_mm.engine.hooks import NonFiniteLossHook
from cosub_mm.models import CosubLoss
from cosub_mm.registry import MODELS
from cosub_mm.stack.deit3 import DeiT3AuthorsInit


def test_registries_have_cosub_mm_scope_and_root_parent():
    from mmengine.registry import MODELS as ROOT
    assert MODELS.scope == 'cosub_mm'
    assert MODELS.parent is ROOT


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmseg'])
def test_build_cosub_mm_type_from_scoped_registry(scope):
    if scope == 'mmpretrain':
        from mmpretrain.registry import MODELS as SCOPED
    else:
        from mmseg.registry import MODELS as SCOPED
    name = f'test_registry_{scope}'
    with DefaultScope.overwrite_default_scope(scope):
        DefaultScope.get_instance(name, scope_name=scope)
        loss = SCOPED.build(dict(type='cosub_mm.CosubLoss', lambda_=0.3))
    assert isinstance(loss, CosubLoss)
    assert loss.lambda_ == 0.3


def test_unknown_type_names_registry_and_scope():
    from mmpretrain.registry import MODELS as SCOPED
    with pytest.raises(KeyError, match='cosub_mm'):
        SCOPED.build(dict(type='cosub_mm.NoSuchModel'))


@pytest.mark.parametrize('type_', ['NoSuchNet', 'cosub_mm.NoSuchClassifier'])
def test_unknown_type_message_names_registry_scope_and_fix(type_):
    """mmengine's own message names the type, the scope and the registry
    it searched (the config's default scope), and how to import modules."""
    from mmpretrain.registry import MODELS as SCOPED
    with pytest.raises(KeyError, match=re.escape(
            f'{type_} is not in the mmpretrain::model registry. Please check '
            f'whether the value of `{type_}` is correct or it was '
            'registered as expected')):
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            SCOPED.build(dict(type=type_))


def _registries():
    return [(name, getattr(registry, name)) for name in registry.__all__]


@pytest.mark.parametrize('name, reg', _registries(), ids=registry.__all__)
def test_locations_import_and_are_where_members_register(name, reg):
    """A registry declares a location exactly when cosub_mm registers into
    it, and the location is the importable package that does."""
    assert reg.scope == 'cosub_mm'
    for location in reg._locations:
        importlib.import_module(location)
    reg.import_from_location()
    if reg._locations:
        assert reg.module_dict, (
            f'{name} declares {reg._locations}, which register nothing')
    else:
        assert not reg.module_dict, (
            f'{name} has members {sorted(reg.module_dict)} but no location')


def _seg_folder(tmp_path) -> str:
    return make_seg_dataset(str(tmp_path / 'seg'), n_train=2, n_val=1)


# registry name -> a config of one of its members, and its class
BUILDS = {
    'MODELS': (lambda tmp_path: dict(type='cosub_mm.CosubLoss'), CosubLoss),
    'HOOKS': (lambda tmp_path: dict(type='cosub_mm.NonFiniteLossHook'),
              NonFiniteLossHook),
    'TRANSFORMS': (lambda tmp_path: dict(
        type='cosub_mm.CheckSegAnnotation', num_classes=4),
                   CheckSegAnnotation),
    'DATASETS': (lambda tmp_path: dict(
        type='cosub_mm.FashionScenesDataset', data_root=_seg_folder(tmp_path),
        data_prefix=dict(img_path='images/training',
                         seg_map_path='annotations/training'),
        pipeline=[]), FashionScenesDataset),
    'DATA_SAMPLERS': (lambda tmp_path: dict(
        type='cosub_mm.SampleSeedSampler', dataset=[0, 1, 2], seed=0,
        sampler=dict(type='DefaultSampler', shuffle=False)),
                      SampleSeedSampler),
    'WEIGHT_INITIALIZERS': (
        lambda tmp_path: dict(type='cosub_mm.DeiT3AuthorsInit'),
        DeiT3AuthorsInit),
}


def test_every_registry_with_members_has_a_build_below():
    with_members = {name for name, reg in _registries() if reg.module_dict}
    assert with_members == set(BUILDS)


@pytest.mark.parametrize('name', sorted(BUILDS))
def test_registry_builds_a_registered_member(name, tmp_path):
    make_cfg, cls = BUILDS[name]
    obj = getattr(registry, name).build(make_cfg(tmp_path))
    assert type(obj) is cls
    if name == 'DATASETS':
        assert len(obj) == 2
