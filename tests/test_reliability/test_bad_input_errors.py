"""Bad input gives a clear error naming the file or field.

Where mmengine/mmcv/mmseg/mmpretrain already name the file, the test proves
it. The checks that cosub_mm adds are tested with their modules
(tests/test_datasets/test_check_seg_annotation.py, the empty-dataset fix in
tests/test_stack/test_datasets.py, check_checkpoint_matches in
tests/test_utils.py), except CosubLoss/CosubClassifier validation and
tools/test.py's key check, below.
"""
import os
import os.path as osp
import re

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope
from PIL import Image

import cosub_mm  # noqa: F401
from conftest import (TEST_CONFIGS, build_mmpretrain, make_cls_dataset,
                      make_seg_dataset, run_tool)

SEG_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='cosub_mm.CheckSegAnnotation', num_classes=4),
]


def cls_dataset(root: str, prefix: str = 'train', pipeline=None):
    from mmpretrain.datasets import CustomDataset
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return CustomDataset(
            data_root=root, data_prefix=prefix,
            pipeline=pipeline or [dict(type='LoadImageFromFile')])


def seg_dataset(root: str, pipeline=None):
    from mmseg.datasets import ADE20KDataset
    with DefaultScope.overwrite_default_scope('mmseg'):
        return ADE20KDataset(
            data_root=root, reduce_zero_label=True,
            data_prefix=dict(img_path='images/training',
                             seg_map_path='annotations/training'),
            pipeline=SEG_PIPELINE if pipeline is None else pipeline)


def get_item(dataset, idx: int, scope: str):
    with DefaultScope.overwrite_default_scope(scope):
        return dataset[idx]


@pytest.fixture
def cls_root(tmp_path) -> str:
    return make_cls_dataset(str(tmp_path / 'cls'), per_class=2)


@pytest.fixture
def seg_root(tmp_path) -> str:
    return make_seg_dataset(str(tmp_path / 'seg'), n_train=2, n_val=1)


# --- images -----------------------------------------------------------------

def _jpeg_bytes(tmp_path) -> bytes:
    path = str(tmp_path / 'ok.jpg')
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(path)
    with open(path, 'rb') as f:
        return f.read()


@pytest.mark.parametrize('damage', ['corrupt', 'truncated'])
def test_bad_jpeg_names_the_file(cls_root, tmp_path, damage):
    data = _jpeg_bytes(tmp_path)
    data = b'\xff\xd8 not a jpeg ' * 20 if damage == 'corrupt' \
        else data[:len(data) // 2]
    bad = osp.join(cls_root, 'train', 'class_1', '001.png')
    os.remove(bad)
    bad = bad.replace('.png', '.jpg')
    with open(bad, 'wb') as f:
        f.write(data)
    ds = cls_dataset(cls_root)
    idx = [i for i in range(len(ds)) if ds.get_data_info(i)['img_path'] ==
           bad][0]
    with pytest.raises(AssertionError,
                       match=f'failed to load image: {re.escape(bad)}'):
        get_item(ds, idx, 'mmpretrain')


@pytest.mark.parametrize('mode,pixel,expected_bgr', [
    ('L', 77, (77, 77, 77)),
    ('RGBA', (10, 20, 30, 128), (30, 20, 10)),
])
def test_grayscale_and_rgba_images_become_3_channel(cls_root, mode, pixel,
                                                    expected_bgr):
    path = osp.join(cls_root, 'train', 'class_0', '000.png')
    Image.new(mode, (40, 36), pixel).save(path)
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(TEST_CONFIGS, 'tiny_cls.py'))
    ds = cls_dataset(cls_root, pipeline=cfg.test_pipeline)
    idx = [i for i in range(len(ds))
           if ds.get_data_info(i)['img_path'] == path][0]
    packed = get_item(ds, idx, 'mmpretrain')['inputs']
    assert packed.shape == (3, 32, 32)  # resized, cropped, 3 channels
    expected = torch.tensor(expected_bgr, dtype=packed.dtype)
    assert torch.equal(packed[:, 16, 16], expected)


# --- data folders -----------------------------------------------------------

def test_empty_classification_folder_names_it(tmp_path):
    os.makedirs(tmp_path / 'empty' / 'train')
    with pytest.raises(RuntimeError, match=re.escape(
            f"Found 0 files in subfolders of: {{'img_path': "
            f"'{tmp_path / 'empty' / 'train'}'}}")):
        cls_dataset(str(tmp_path / 'empty'))


def test_missing_classification_folder_names_it(cls_root):
    with pytest.raises(FileNotFoundError,
                       match=re.escape(osp.join(cls_root, 'training'))):
        cls_dataset(cls_root, prefix='training')


def test_wrong_data_root_names_the_missing_folder(tmp_path):
    wrong = str(tmp_path / 'ADEChallengeData2016')
    with pytest.raises(FileNotFoundError,
                       match=re.escape(osp.join(wrong, 'images/training'))):
        seg_dataset(wrong)


# --- segmentation annotations ----------------------------------------------

def test_missing_annotation_png_names_it(seg_root):
    missing = osp.join(seg_root, 'annotations', 'training', '001.png')
    os.remove(missing)
    ds = seg_dataset(seg_root)
    get_item(ds, 0, 'mmseg')  # the other sample is fine
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        get_item(ds, 1, 'mmseg')


# --- cosub configuration ------------------------------------------------------

@pytest.mark.parametrize('lambda_', [-0.1, 1.5])
def test_cosub_loss_lambda_outside_unit_interval(lambda_):
    from cosub_mm.models.losses import CosubLoss
    with pytest.raises(ValueError,
                       match=rf'lambda_ must be in \[0, 1\], got {lambda_}'):
        CosubLoss(lambda_=lambda_)


def test_cosub_loss_mismatched_shapes_name_both():
    from cosub_mm.models.losses import CosubLoss
    loss = CosubLoss()
    with pytest.raises(ValueError, match=re.escape(
            'logits of submodel 2 have shape (4, 5), submodel 1 has (4, 3)')):
        loss(torch.zeros(4, 3), torch.zeros(4, 5), torch.zeros(4).long())
    with pytest.raises(ValueError, match=re.escape(
            'soft target shape (4, 5) does not match logits (4, 3)')):
        loss(torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(4, 5))


def test_fewer_than_two_submodels():
    from cosub_mm.models.losses import CosubLoss
    with pytest.raises(ValueError, match='num_submodels must be an integer '
                       '>= 2, got 1'):
        CosubLoss(num_submodels=1)


def test_cosub_with_stochastic_depth_rate_zero():
    with pytest.raises(ValueError, match='drop_path_rate is 0'):
        build_mmpretrain(dict(
            type='cosub_mm.CosubClassifier',
            backbone=dict(type='VisionTransformer', arch=dict(
                embed_dims=32, num_layers=1, num_heads=2,
                feedforward_channels=32), img_size=32, patch_size=8,
                          drop_path_rate=0.0),
            head=dict(type='VisionTransformerClsHead', num_classes=3,
                      in_channels=32)))


def test_batch_of_one_with_cosub_on_batchnorm_backbone():
    from mmpretrain.structures import DataSample
    model = build_mmpretrain(dict(
        type='cosub_mm.CosubClassifier',
        backbone=dict(type='ResNet', depth=18, stem_channels=8,
                      base_channels=8, drop_path_rate=0.1),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=64)))
    model.train()
    samples = [DataSample().set_gt_label(i) for i in range(2)]
    with pytest.raises(ValueError, match='a training batch of 1 image with '
                       'BatchNorm.*train_dataloader.batch_size >= 2'):
        model.loss(torch.randn(1, 3, 32, 32), samples[:1])
    losses = model.loss(torch.randn(2, 3, 32, 32), samples)  # control
    assert torch.isfinite(losses['loss_label'] + losses['loss_distill'])


# --- checkpoints -------------------------------------------------------------

def test_checkpoint_of_other_architecture_lists_keys(tmp_path):
    """tools/test.py refuses it (mmengine would only warn and evaluate
    random weights), naming the file and the missing/unexpected keys."""
    resnet = build_mmpretrain(dict(
        type='ImageClassifier',
        backbone=dict(type='ResNet', depth=18, stem_channels=8,
                      base_channels=8),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=64)))
    ckpt = str(tmp_path / 'resnet.pth')
    torch.save({'state_dict': resnet.state_dict()}, ckpt)
    root = make_cls_dataset(str(tmp_path / 'data'), per_class=1)
    proc = run_tool(['tools/test.py', osp.join(TEST_CONFIGS, 'tiny_cls.py'),
                     ckpt, '--work-dir', str(tmp_path / 'work'),
                     '--cfg-options',
                     f'test_dataloader.dataset.data_root={root}'],
                    check=False)
    assert proc.returncode != 0
    err = proc.stderr
    assert f'ValueError: Checkpoint {ckpt} does not match the model ' \
           'ImageClassifier' in err
    assert re.search(r'missing keys \(\d+\): backbone.cls_token, '
                     r'backbone.pos_embed', err)
    assert re.search(r'unexpected keys \(\d+\): backbone.conv1.weight', err)
    assert 'shape mismatches' not in err
