"""configs/upernet: every config builds; classifier checkpoints and exported
backbones load into every segmentation backbone; each backbone trains 2
iterations at 64 px on generated fashion scenes and evaluates mIoU; the demo
UperNet finetunes from the demo ViT and tools/test.py --tta/--show-dir work.
"""
import copy
import glob
import os.path as osp
import re

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint_with_prefix
from PIL import Image

import cosub_mm  # noqa: F401
from conftest import REPO, load_tool, run_tool, tool_env

CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'upernet', '*.py')))
DEMO_CFG = osp.join(REPO, 'configs', 'demo', 'upernet_fashion-scenes.py')
NUM_CLASSES = 15  # fashion scenes

# Tiny stand-ins with the configs' backbone types and structural flags.
TINY = {
    'DeiT3': dict(
        arch=dict(embed_dims=32, num_layers=4, num_heads=2,
                  feedforward_channels=64),
        img_size=(64, 64), out_indices=(0, 1, 2, 3)),
    'SwinTransformer': dict(
        arch=dict(embed_dims=16, depths=[1, 1, 1, 1],
                  num_heads=[1, 1, 1, 1])),
    'ConvNeXt': dict(arch=dict(depths=[1, 1, 1, 1],
                               channels=[16, 32, 64, 128])),
}
CHANNELS = {'DeiT3': [32] * 4, 'SwinTransformer': [16, 32, 64, 128],
            'ConvNeXt': [16, 32, 64, 128]}


def _kind(cfg: Config) -> str:
    return cfg.model.backbone.type.split('.')[-1]


def _scenes(root: str) -> str:
    path = osp.join(REPO, 'tools', 'dataset_converters',
                    'make_fashion_scenes.py')
    tool = load_tool(path)
    tool.make_fashion_scenes(root, seed=0, num_train=6, num_val=3, size=64,
                             fashion_root=osp.join(REPO, 'data',
                                                   'fashion_mnist'),
                             show_progress=False)
    return root


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """Tiny models run as fast on one thread, and far faster when the
    machine's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def scenes(tmp_path_factory) -> str:
    return _scenes(str(tmp_path_factory.mktemp('scenes')))


def _classifier(backbone: dict) -> torch.nn.Module:
    """A CosubClassifier (mmpretrain scope) around a seg backbone cfg."""
    from mmpretrain.registry import MODELS
    backbone = copy.deepcopy(backbone)
    backbone.pop('init_cfg', None)
    backbone['type'] = backbone['type'].split('.')[-1]
    kind = backbone['type']
    if kind == 'DeiT3':  # the classifier at 32 px: pos_embed 2x2 -> 4x4
        backbone.update(img_size=32, out_type='cls_token', out_indices=-1)
        neck, in_ch = None, 32
        head_type = 'VisionTransformerClsHead'
    else:
        backbone.pop('out_indices', None)
        if kind == 'ConvNeXt':
            backbone['gap_before_final_norm'] = True
        neck, in_ch = dict(type='GlobalAveragePooling'), 128
        head_type = 'LinearClsHead'
    backbone['drop_path_rate'] = 0.1
    cfg = dict(type='cosub_mm.CosubClassifier', backbone=backbone,
               neck=neck, head=dict(type=head_type, num_classes=10,
                                    in_channels=in_ch))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg)
        model.init_weights()
    return model


def _tiny_backbone(path: str) -> dict:
    cfg = Config.fromfile(path)
    backbone = cfg.model.backbone.to_dict()
    backbone.update(copy.deepcopy(TINY[_kind(cfg)]))
    return backbone


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory) -> dict:
    """Per backbone type: a CosubClassifier checkpoint and the exported
    backbone (keys ``backbone.*``), and the classifier's backbone weights."""
    out = {}
    folder = tmp_path_factory.mktemp('ckpts')
    for path in CONFIGS:
        backbone = _tiny_backbone(path)
        kind = backbone['type'].split('.')[-1]
        if kind in out:
            continue
        model = _classifier(backbone)
        state = model.state_dict()
        cls_ckpt = str(folder / f'{kind}_cosub.pth')
        torch.save({'state_dict': state, 'meta': {}}, cls_ckpt)
        exported = str(folder / f'{kind}_backbone.pth')
        torch.save({'state_dict': {k: v for k, v in state.items()
                                   if k.startswith('backbone.')}},
                   exported)
        out[kind] = dict(classifier=cls_ckpt, backbone=exported,
                         weights=model.backbone.state_dict())
    return out


def _build_meta(model_cfg: dict) -> torch.nn.Module:
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        try:  # no memory for DeiT3-L's 383M parameters
            with torch.device('meta'):
                return MODELS.build(model_cfg)
        except RuntimeError:  # ConvNeXt/Swin call .item() while building
            return MODELS.build(model_cfg)


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_upernet_config_builds_with_ade20k_recipe(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmseg'
    assert cfg.custom_imports['imports'] == ['cosub_mm']
    model = _build_meta(cfg.model)
    assert type(model).__name__ in ('LayerDecayEncoderDecoder',
                                    'CosubEncoderDecoder')
    assert type(model.decode_head).__name__ == 'UPerHead'
    assert type(model.auxiliary_head).__name__ == 'FCNHead'
    assert model.auxiliary_head.loss_decode.loss_weight == 0.4
    assert model.decode_head.num_classes == 150
    init = cfg.model.backbone.init_cfg
    assert init.type == 'Pretrained' and init.prefix == 'backbone.'
    if _kind(cfg) == 'DeiT3':
        assert model.backbone.out_type == 'featmap'
        assert len(model.backbone.out_indices) == 4
        assert hasattr(model.backbone.layers[0].attn, 'gamma1')  # LayerScale
        assert cfg.model.neck.scales == [4, 2, 1, 0.5]
    # 512x512, 8 GPUs x 2, AdamW, 1500 warmup iterations then poly to 160k.
    assert cfg.crop_size == (512, 512)
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    warmup, poly = cfg.param_scheduler
    assert (warmup.type, warmup.end) == ('LinearLR', 1500)
    assert (poly.type, poly.begin, poly.end) == ('PolyLR', 1500, 160000)
    assert cfg.train_cfg.max_iters == 160000
    names = [t['type'] for t in cfg.train_pipeline]
    assert names[2:6] == ['RandomResize', 'RandomCrop', 'RandomFlip',
                          'PhotoMetricDistortion']
    assert cfg.train_pipeline[1].reduce_zero_label is True
    ratios = [t['scale_factor'] for t in cfg.tta_pipeline[1].transforms[0]]
    assert len(ratios) == 6 and cfg.tta_model.type == 'SegTTAModel'


@pytest.mark.parametrize('source', ['classifier', 'backbone'])
@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_checkpoint_loads_into_seg_backbone(path, source, checkpoints):
    from mmseg.registry import MODELS
    backbone_cfg = _tiny_backbone(path)
    kind = backbone_cfg['type'].split('.')[-1]
    ckpt = checkpoints[kind]
    backbone_cfg['init_cfg']['checkpoint'] = ckpt[source]
    with DefaultScope.overwrite_default_scope('mmseg'):
        backbone = MODELS.build(backbone_cfg)
    state = _load_checkpoint_with_prefix('backbone.', ckpt[source])
    result = backbone.load_state_dict(state, strict=False)
    assert result.unexpected_keys == []
    if kind == 'DeiT3':
        assert result.missing_keys == []
    else:  # per-stage output norms the classifier (norm3 only) never had
        assert sorted({k.split('.')[0] for k in result.missing_keys}) == [
            'norm0', 'norm1', 'norm2']
    # Through init_cfg, as a run does: the weights are the classifier's.
    with DefaultScope.overwrite_default_scope('mmseg'):
        backbone = MODELS.build(backbone_cfg)
        backbone.init_weights()
    loaded = backbone.state_dict()
    for key, value in ckpt['weights'].items():
        if key == 'pos_embed':  # resized 2x2 -> 4x4 patch grid
            assert loaded[key].shape[1] == 16 and value.shape[1] == 4
        elif 'relative_position_index' not in key:
            torch.testing.assert_close(loaded[key], value, msg=key)


def _tiny_run_cfg(path: str, data_root: str, work_dir: str,
                  checkpoint: str) -> Config:
    cfg = Config.fromfile(path)
    kind = _kind(cfg)
    cfg.model.backbone.update(copy.deepcopy(TINY[kind]))
    cfg.model.backbone.init_cfg.checkpoint = checkpoint
    channels = CHANNELS[kind]
    if cfg.model.get('neck'):
        cfg.model.neck.update(in_channels=channels, out_channels=32)
        channels = [32] * 4
    cfg.model.decode_head.update(in_channels=channels, channels=16,
                                 num_classes=NUM_CLASSES,
                                 norm_cfg=dict(type='BN'))
    aux = cfg.model.auxiliary_head
    aux.update(in_channels=channels[aux.in_index], channels=8,
               num_classes=NUM_CLASSES, norm_cfg=dict(type='BN'))
    cfg.model.data_preprocessor.size = (64, 64)
    for pipeline in (cfg.train_pipeline, cfg.test_pipeline):
        for t in pipeline:
            if t['type'] in ('RandomResize', 'Resize'):
                t['scale'] = (128, 64)
            if t['type'] == 'RandomCrop':
                t['crop_size'] = (64, 64)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[key]
        loader.update(num_workers=0, persistent_workers=False)
        # the train loader wraps its dataset for per-sample seeds
        dataset = loader.dataset.get('dataset', loader.dataset)
        dataset.update(type='cosub_mm.FashionScenesDataset')
        loader.dataset.update(data_root=data_root)
    cfg.train_dataloader.dataset.pipeline = cfg.train_pipeline
    cfg.val_dataloader.dataset.pipeline = cfg.test_pipeline
    cfg.test_dataloader.dataset.pipeline = cfg.test_pipeline
    cfg.tta_pipeline[1].transforms[0] = [
        dict(type='Resize', scale_factor=r, keep_ratio=True)
        for r in (0.75, 1.0)
    ]
    cfg.train_cfg.update(max_iters=2, val_interval=2)
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
             end=1),
        dict(type='PolyLR', power=1.0, by_epoch=False, begin=1, end=2),
    ]
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 2
    cfg.env_cfg.dist_cfg = dict(backend='gloo')
    cfg.work_dir = work_dir
    cfg.log_level = 'WARNING'
    return cfg


@pytest.mark.parametrize(
    'path', [p for p in CONFIGS if 'base' not in p and 'large' not in p],
    ids=osp.basename)
def test_two_iterations_at_64px_then_miou(path, scenes, checkpoints,
                                           tmp_path):
    cfg = _tiny_run_cfg(path, scenes, str(tmp_path),
                        checkpoints[_kind(Config.fromfile(path))]
                        ['classifier'])
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    # Layer decay reached the optimizer: the stem learns slowest.
    lrs = {g['param_name']: g['lr'] for g in
           runner.optim_wrapper.optimizer.param_groups if 'param_name' in g}
    stem = [v for k, v in lrs.items() if 'patch_embed' in k
            or 'downsample_layers.0' in k]
    head = lrs['decode_head.conv_seg.weight']
    if cfg.optim_wrapper.paramwise_cfg.layer_decay_rate < 1:
        assert max(stem) < head
    metrics = runner.test()
    assert 0.0 <= metrics['mIoU'] <= 100.0
    assert osp.isfile(osp.join(str(tmp_path), 'iter_2.pth'))


def _miou_from_maps(pred_dir: str, ann_dir: str) -> float:
    """mIoU over the set as mmseg defines it, from saved label maps."""
    inter = np.zeros(NUM_CLASSES)
    union = np.zeros(NUM_CLASSES)
    for ann_path in sorted(glob.glob(osp.join(ann_dir, '*.png'))):
        gt = np.asarray(Image.open(ann_path)).astype(np.int64) - 1
        pred = np.asarray(Image.open(
            osp.join(pred_dir, osp.basename(ann_path)))).astype(np.int64) - 1
        valid = gt >= 0  # raw 0 is 'other': ignored
        for c in range(NUM_CLASSES):
            p, g = (pred == c) & valid, (gt == c) & valid
            inter[c] += (p & g).sum()
            union[c] += (p | g).sum()
    with np.errstate(invalid='ignore', divide='ignore'):
        return float(np.nanmean(inter / union) * 100)


def test_demo_config_finetunes_demo_vit_and_test_tool_tta_show(
        scenes, tmp_path):
    """The RGB demo UperNet loads the demo ViT classifier (patch 7, 1
    channel: its kernel times the luma weights), trains 2 iterations;
    tools/test.py --tta --show-dir --out then reports the mIoU of the label
    maps it wrote and draws PNG overlays."""
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(DEMO_CFG)
    vit = cfg.model.backbone.to_dict()
    vit.update(type='VisionTransformer', img_size=28, out_type='cls_token',
               out_indices=-1, in_channels=1)
    vit.pop('init_cfg')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        classifier = MODELS.build(dict(
            type='cosub_mm.CosubClassifier', backbone=vit,
            head=dict(type='VisionTransformerClsHead', num_classes=10,
                      in_channels=vit['arch']['embed_dims'])))
    ckpt = str(tmp_path / 'demo_cosub.pth')
    torch.save({'state_dict': classifier.state_dict(), 'meta': {}}, ckpt)

    cfg.model.backbone.init_cfg.checkpoint = ckpt
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = scenes
    cfg.train_cfg.update(max_iters=2, val_interval=2)
    cfg.param_scheduler[0].end = 1
    cfg.param_scheduler[1].update(begin=1, end=2)
    cfg.default_hooks.checkpoint.interval = 2
    cfg.work_dir = str(tmp_path / 'work')
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    runner.model.init_weights()
    gray = classifier.backbone.patch_embed.projection.weight
    torch.testing.assert_close(
        runner.model.backbone.patch_embed.projection.weight,
        gray * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1))
    runner.train()
    weights = osp.join(cfg.work_dir, 'iter_2.pth')

    show, out = tmp_path / 'show', tmp_path / 'pred'
    proc = run_tool([
        'tools/test.py', DEMO_CFG, weights, '--tta', '--show-dir',
        str(show), '--out', str(out), '--work-dir',
        str(tmp_path / 'test'), '--cfg-options'
    ] + [f'{k}.dataset.data_root={scenes}'
         for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')],
        env=tool_env(OMP_NUM_THREADS='1'))
    printed = float(re.findall(r'mIoU: ([\d.]+)', proc.stdout)[-1])
    expected = _miou_from_maps(
        str(out), osp.join(scenes, 'annotations', 'validation'))
    assert printed == pytest.approx(expected, abs=0.01)
    overlays = glob.glob(osp.join(str(show), '**', '*.png'), recursive=True)
    assert len(overlays) == 3
    assert Image.open(overlays[0]).mode == 'RGB'
