"""FashionScenesDataset: ADE20k-style, own classes, reduce_zero_label."""
import glob
import os.path as osp

import numpy as np
import pytest
from mmengine.registry import DefaultScope
from PIL import Image

import cosub_mm  # noqa: F401
from conftest import REPO, load_tool

TOOL = osp.join(REPO, 'tools', 'dataset_converters', 'make_fashion_scenes.py')


@pytest.fixture(scope='module')
def cli_root(tmp_path_factory) -> str:
    tool = load_tool(TOOL)
    root = str(tmp_path_factory.mktemp('scenes'))
    tool.make_fashion_scenes(root, seed=0, num_train=1, num_val=2, size=48,
                             fashion_root=osp.join(REPO, 'data',
                                                   'fashion_mnist'),
                             show_progress=False)
    return root


def _files(root: str, kind: str, split: str):
    ext = 'jpg' if kind == 'images' else 'png'
    return sorted(glob.glob(osp.join(root, kind, split, f'*.{ext}')))


def test_dataset_reduces_zero_label(cli_root):
    from mmseg.registry import DATASETS
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(dict(
            type='cosub_mm.FashionScenesDataset',
            data_root=cli_root,
            data_prefix=dict(img_path='images/validation',
                             seg_map_path='annotations/validation'),
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='LoadAnnotations')]))
    classes = dataset.metainfo['classes']
    assert len(classes) == 15 and len(dataset.metainfo['palette']) == 15
    assert classes[:3] == ('brick', 'grass', 'gravel')
    assert classes[5] == 'T-shirt/top' and classes[-1] == 'ankle boot'
    assert len(dataset) == 2
    item = dataset[0]
    raw = np.asarray(Image.open(
        _files(cli_root, 'annotations', 'validation')[0])).astype(int)
    expected = np.where(raw == 0, 255, raw - 1)
    np.testing.assert_array_equal(item['gt_seg_map'], expected)
