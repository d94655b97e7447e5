"""CheckSegAnnotation names the label map whose ids or size are wrong.

It runs in an mmseg ``ADE20KDataset`` pipeline right after
``LoadAnnotations``, as the configs use it.
"""
import os.path as osp
import re

import numpy as np
import pytest
from mmengine.registry import DefaultScope
from PIL import Image

import cosub_mm  # noqa: F401
from conftest import make_seg_dataset

SEG_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='cosub_mm.CheckSegAnnotation', num_classes=4),
]


def seg_dataset(root: str):
    from mmseg.datasets import ADE20KDataset
    with DefaultScope.overwrite_default_scope('mmseg'):
        return ADE20KDataset(
            data_root=root, reduce_zero_label=True,
            data_prefix=dict(img_path='images/training',
                             seg_map_path='annotations/training'),
            pipeline=SEG_PIPELINE)


def get_item(dataset, idx: int):
    with DefaultScope.overwrite_default_scope('mmseg'):
        return dataset[idx]


@pytest.fixture
def seg_root(tmp_path) -> str:
    return make_seg_dataset(str(tmp_path / 'seg'), n_train=2, n_val=1)


def test_label_ids_beyond_num_classes_name_file_and_ids(seg_root):
    path = osp.join(seg_root, 'annotations', 'training', '000.png')
    label = np.array(Image.open(path))
    label[10:12, 10:12] = 7  # 6 after reduce_zero_label, >= 4 classes
    label[20:22, 20:22] = 255  # the ignore index (0 -> 255) is fine
    Image.fromarray(label).save(path)
    ds = seg_dataset(seg_root)
    with pytest.raises(ValueError, match=re.escape(
            f'Label map {path} holds class ids [6] (after '
            'reduce_zero_label) outside [0, 4)')):
        get_item(ds, 0)
    ok = get_item(ds, 1)['gt_seg_map']
    assert set(np.unique(ok)) <= {0, 1, 2, 3, 255}


def test_annotation_size_mismatch_names_both_files(seg_root):
    path = osp.join(seg_root, 'annotations', 'training', '000.png')
    Image.fromarray(np.ones((48, 64), np.uint8)).save(path)
    ds = seg_dataset(seg_root)
    img = osp.join(seg_root, 'images', 'training', '000.jpg')
    with pytest.raises(ValueError, match=re.escape(
            f'Label map {path} has size 64x48 (WxH) but its image {img} '
            'has 64x64')):
        get_item(ds, 0)
