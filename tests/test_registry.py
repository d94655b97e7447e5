"""cosub_mm registries are reachable from mmpretrain- and mmseg-scoped code."""
import pytest
from mmengine.registry import DefaultScope

import cosub_mm  # noqa: F401
from cosub_mm.models import CosubLoss
from cosub_mm.registry import MODELS


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
