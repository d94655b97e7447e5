"""cosub_mm.stack.datasets: the error without the fix, the fix with it.

The 'without' half runs in a fresh interpreter that never imports cosub_mm,
so it fails if the stack stops needing the fix (then the fix should go).
"""
import os
import re

import pytest
from mmengine.registry import DefaultScope

import cosub_mm  # noqa: F401
from cosub_mm import stack
from stack_helpers import run_python

EMPTY_DATASET = (
    'from mmengine.dataset import BaseDataset\n'
    'class Empty(BaseDataset):\n'
    '    def load_data_list(self):\n'
    '        return []\n')


def test_empty_dataset_error_without_fix_names_no_folder(tmp_path):
    proc = run_python(EMPTY_DATASET +
                      f'Empty(data_root={str(tmp_path)!r})')
    assert proc.returncode != 0
    assert 'need at least one array to concatenate' in proc.stderr


def test_empty_dataset_error_names_the_folder(tmp_path):
    namespace: dict = {}
    exec(EMPTY_DATASET, namespace)
    with pytest.raises(ValueError, match=re.escape(
            f'Empty found no samples: data_root={str(tmp_path)!r}')):
        namespace['Empty'](data_root=str(tmp_path))
    assert stack.fix_empty_dataset_error() is False


def test_empty_segmentation_folder_names_data_root(tmp_path):
    """The fix as an mmseg dataset meets it: existing but empty folders."""
    from mmseg.datasets import ADE20KDataset
    for sub in ('images', 'annotations'):
        os.makedirs(tmp_path / 'ade' / sub / 'training')
    with pytest.raises(ValueError,
                       match=r'ADE20KDataset found no samples: data_root='
                       f"'{re.escape(str(tmp_path / 'ade'))}'"):
        with DefaultScope.overwrite_default_scope('mmseg'):
            ADE20KDataset(
                data_root=str(tmp_path / 'ade'), reduce_zero_label=True,
                data_prefix=dict(img_path='images/training',
                                 seg_map_path='annotations/training'),
                pipeline=[])
