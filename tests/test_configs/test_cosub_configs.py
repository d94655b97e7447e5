"""Every ``configs/cosub/*.py`` builds and trains 2 iterations at tiny size.

The configs are globbed, so a new config is tested without editing this
file. :func:`shrink` makes any classification config tiny:

- backbone: a backbone whose mmpretrain ``arch_zoo``/``arch_settings``
  describes a ViT (``embed_dims``/``num_layers``), a Swin-like
  (``embed_dims``/``depths``) or a ConvNeXt-like (``channels``/``depths``)
  network gets a tiny ``arch``; ``img_size`` becomes 32; ``Pretrained`` init_cfgs are
  dropped; the head's ``in_channels`` is read off a forward pass;
- data: every transform's ``scale``/``crop_size`` becomes 32 and each
  dataloader reads a generated 2-class ImageNet-layout set (8 images, batch
  4, ``num_workers=0``) through ``CustomDataset`` with the config's own
  pipeline;
- loop: one epoch (2 iterations) then validation, or 2 iterations.

A backbone this cannot shrink gets its tiny settings in
:data:`TINY_OVERRIDES` below, keyed by the backbone's ``type``: dotted keys
whose values replace the config's, e.g.::

    'cosub_mm.Foo': {'model.backbone.arch': 'tiny',
                     'model.head.in_channels': 96}

so every config of that backbone (baseline, ``cosub_`` twin, other sizes)
shares them. They are test settings and stay out of the user configs.
Overrides that set ``model.backbone.*`` replace the automatic backbone
shrinking.
"""
import copy
import glob
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

import cosub_mm  # noqa: F401
from conftest import REPO, make_cls_dataset

CONFIG_DIR = osp.join(REPO, 'configs', 'cosub')
CONFIGS = sorted(glob.glob(osp.join(CONFIG_DIR, '*.py')))
# backbone type -> dotted-key overrides (see the module docstring)
TINY_OVERRIDES = {
    # a 2-stage PiT
    'cosub_mm.PiT': {
        'model.backbone.arch':
        dict(base_dims=[8, 8], depths=[1, 1], num_heads=[2, 4], patch_size=8,
             stride=4),
    },
    # a 2-stage RegNetY
    'cosub_mm.RegNetY': {
        'model.backbone.arch':
        dict(w0=8, wa=8.0, wm=2.0, group_w=8, depth=2, bot_mul=1.0),
        'model.backbone.strides': (2, 2),
        'model.backbone.dilations': (1, 1),
        'model.backbone.out_indices': (1, ),
    },
    # XCiT has no arch presets; patch 8 on 32 px
    'XCiT': {
        'model.backbone.embed_dims': 32,
        'model.backbone.depth': 1,
        'model.backbone.cls_attn_layers': 1,
        'model.backbone.num_heads': 2,
        'model.backbone.patch_size': 8,
    },
}
TINY_PX = 32


def _arch_kind(backbone_cls) -> str:
    zoo = (getattr(backbone_cls, 'arch_zoo', None)
           or getattr(backbone_cls, 'arch_settings', None) or {})
    keys = set()
    for value in zoo.values():
        keys |= set(value) if isinstance(value, dict) else set()
    if {'embed_dims', 'num_layers'} <= keys:
        return 'vit'
    if {'embed_dims', 'depths'} <= keys:
        return 'swin'
    if {'channels', 'depths'} <= keys:
        return 'convnext'
    return ''


TINY_ARCH = {
    'vit': dict(embed_dims=32, num_layers=2, num_heads=2,
                feedforward_channels=64),
    'swin': dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2]),
    'convnext': dict(depths=[1, 1, 1, 1], channels=[8, 8, 16, 16]),
}


def _drop_pretrained(node):
    """Remove ``init_cfg=dict(type='Pretrained', ...)`` everywhere."""
    if isinstance(node, dict):
        init = node.get('init_cfg')
        if isinstance(init, dict) and init.get('type') == 'Pretrained':
            node['init_cfg'] = None
        for value in node.values():
            _drop_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _drop_pretrained(value)


def _shrink_pipeline(pipeline):
    for t in pipeline or []:
        for key in ('scale', 'crop_size', 'size'):
            if key in t and isinstance(t[key], (int, tuple, list)):
                t[key] = TINY_PX
        for key in ('transforms', ):  # wrappers such as RandomChoice
            for sub in t.get(key) or []:
                _shrink_pipeline(sub if isinstance(sub, list) else [sub])


def _find_pipeline(dataset):
    while dataset is not None and 'pipeline' not in dataset:
        dataset = dataset.get('dataset')
    return [] if dataset is None else dataset['pipeline']


def _backbone_cls(cfg):
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.get(cfg.model.backbone['type'])


def _set_head_channels(cfg):
    """Set head.in_channels from a forward pass of the tiny backbone."""
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        backbone = MODELS.build(copy.deepcopy(cfg.model.backbone))
        neck = cfg.model.get('neck')
        neck = MODELS.build(copy.deepcopy(neck)) if neck else None
    with torch.no_grad():
        feats = backbone(torch.zeros(1, 3, TINY_PX, TINY_PX))
        if neck is not None:
            feats = neck(feats)
    last = feats[-1]
    last = last[-1] if isinstance(last, (list, tuple)) else last
    cfg.model.head.in_channels = int(last.shape[1])


def tiny_overrides(cfg: Config) -> dict:
    """The :data:`TINY_OVERRIDES` entry of the config's backbone type."""
    return dict(TINY_OVERRIDES.get(cfg.model.backbone['type'], {}))


def shrink(cfg: Config, name: str, data_root: str, work_dir: str) -> None:
    """Make a classification config tiny (see the module docstring)."""
    overrides = tiny_overrides(cfg)
    _drop_pretrained(cfg.model)
    backbone = cfg.model.backbone
    if not any(k.startswith('model.backbone') for k in overrides):
        kind = _arch_kind(_backbone_cls(cfg))
        if not kind:
            raise AssertionError(
                f'{name}: cannot shrink backbone {backbone["type"]!r}; '
                'add its tiny settings to TINY_OVERRIDES (keyed by backbone '
                'type) of tests/test_configs/test_cosub_configs.py')
        backbone.arch = TINY_ARCH[kind]
        if kind == 'swin':  # 32 px ends in a 1x1 map: pad to the window
            backbone.window_size = 2
            backbone.pad_small_map = True
    if 'img_size' in backbone:
        backbone.img_size = TINY_PX
    for key, value in overrides.items():
        *parents, leaf = key.split('.')
        node = cfg
        for part in parents:
            node = node[part]
        node[leaf] = value  # replaces (a str arch may become a dict)
    if not any(k.startswith('model.head.in_channels') for k in overrides):
        _set_head_channels(cfg)

    for key, split in (('train_dataloader', 'train'),
                       ('val_dataloader', 'val'), ('test_dataloader',
                                                   'val')):
        loader = cfg.get(key)
        if not loader:
            continue
        pipeline = copy.deepcopy(_find_pipeline(loader.dataset))
        _shrink_pipeline(pipeline)
        # serialize_data=False: mmengine's serialization runs gc.collect(),
        # about 0.7 s per dataset in a test process
        loader.dataset = ConfigDict(
            type='CustomDataset', data_root=data_root, data_prefix=split,
            pipeline=pipeline, serialize_data=False)
        loader.batch_size = 4
        loader.num_workers = 0
        loader.persistent_workers = False

    has_val = bool(cfg.get('val_dataloader'))
    if cfg.train_cfg.get('by_epoch', False) or 'Epoch' in cfg.train_cfg.get(
            'type', ''):
        cfg.train_cfg.max_epochs = 1
        cfg.train_cfg.val_interval = 1
    else:
        cfg.train_cfg.max_iters = 2
        cfg.train_cfg.val_interval = 2
    if not has_val:
        cfg.train_cfg.pop('val_interval', None)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1)
    cfg.env_cfg.dist_cfg = dict(backend='gloo')
    cfg.launcher = 'none'
    cfg.work_dir = work_dir
    # unique: mmengine keys loggers/visualizers by experiment name
    cfg.experiment_name = (f'test_{osp.splitext(name)[0]}_'
                           f'{osp.basename(work_dir)}')


@pytest.fixture(scope='module', autouse=True)
def fast_runner():
    """Cut fixed costs that are not under test (about 4 s per config).

    The Runner yapf-formats the whole config twice (log and dump): the
    config is still rendered, only not reformatted. Tiny models run faster
    on one thread than on two shared with other processes.
    """
    import mmengine.config.config as config_module
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(config_module, 'FormatCode',
                   lambda text, **kwargs: (text, None))
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('tiny_imagenet'))
    return make_cls_dataset(root, num_classes=2, per_class=4, size=40)


def test_configs_were_found():
    names = {osp.basename(p) for p in CONFIGS}
    assert 'cosub_deit3-small-p16_8xb256-lamb-800e_in1k.py' in names
    assert len(CONFIGS) >= 20


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_trains_two_tiny_iterations(path, tiny_data, tmp_path):
    name = osp.basename(path)
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmpretrain'
    assert 'cosub_mm' in cfg.custom_imports['imports']
    shrink(cfg, name, tiny_data, str(tmp_path))
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    hub = runner.message_hub
    assert math.isfinite(hub.get_scalar('train/loss').current())
    if cfg.model.type == 'cosub_mm.CosubClassifier':
        for key in ('loss_label', 'loss_distill', 'agreement'):
            assert f'train/{key}' in hub.log_scalars, key
    if cfg.get('val_dataloader'):
        assert 'val/accuracy/top1' in hub.log_scalars
    hooks = [h['type'] for h in cfg.get('custom_hooks', [])]
    if 'cosub_mm.BackboneExportHook' in hooks:
        assert osp.isfile(osp.join(str(tmp_path), 'backbone.pth'))
    if 'cosub_mm.DropPathRateHook' in hooks:
        from cosub_mm.models.drop_path import get_drop_path_rates
        rates = get_drop_path_rates(runner.model.backbone)
        assert len(set(rates)) == 1, rates  # uniform in every block


TWINS = [p for p in CONFIGS if osp.basename(p).startswith('cosub_')
         and osp.isfile(osp.join(CONFIG_DIR, osp.basename(p)[6:]))]


def _without(d: dict, paths) -> dict:
    d = copy.deepcopy(d)
    for path in paths:
        node = d
        *parents, leaf = path.split('.')
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return d


@pytest.mark.parametrize('path', TWINS, ids=osp.basename)
def test_cosub_twin_inherits_baseline_and_differs_only_in_model(path):
    name = osp.basename(path)
    baseline = osp.join(CONFIG_DIR, name[len('cosub_'):])
    with open(path) as f:
        assert f"_base_ = './{name[len('cosub_'):]}'" in f.read()
    a = Config.fromfile(path).to_dict()
    b = Config.fromfile(baseline).to_dict()
    assert a['model']['type'] == 'cosub_mm.CosubClassifier'
    assert b['model']['type'] != a['model']['type']
    assert _without(a, ['model']) == _without(b, ['model'])
    # the model: type, the cosub loss, and which pretrained file to load
    allowed = ['type', 'cosub_loss', 'backbone.init_cfg.checkpoint']
    assert _without(a['model'], allowed) == _without(b['model'], allowed)


def _child_config(tmp_path, body: str) -> Config:
    path = tmp_path / 'child.py'
    base = osp.join(CONFIG_DIR, 'cosub_deit3-small-p16_8xb256-lamb-800e_in1k.py')
    path.write_text(f'_base_ = {base!r}\n{body}')
    return Config.fromfile(str(path))


def test_tiny_overrides_stay_in_this_table_and_are_used():
    types = set()
    for path in CONFIGS:
        cfg = Config.fromfile(path)
        assert 'tiny_overrides' not in cfg, path  # no test settings there
        types.add(cfg.model.backbone['type'])
    assert set(TINY_OVERRIDES) <= types


def test_shrink_applies_tiny_overrides(tmp_path, monkeypatch):
    cfg = _child_config(tmp_path, '')
    monkeypatch.setitem(
        TINY_OVERRIDES, cfg.model.backbone['type'], {
            'model.backbone.arch':
            dict(embed_dims=48, num_layers=1, num_heads=2,
                 feedforward_channels=32)
        })
    shrink(cfg, 'child.py', str(tmp_path), str(tmp_path))
    assert cfg.model.backbone.arch['embed_dims'] == 48
    assert cfg.model.head.in_channels == 48  # read off a forward pass
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert pipeline[1]['type'] == 'RandomResizedCrop'
    assert pipeline[1]['scale'] == TINY_PX


def test_shrink_names_the_fix_for_an_unknown_backbone(tmp_path):
    cfg = _child_config(tmp_path, (
        "model = dict(backbone=dict(_delete_=True, type='ResNet', "
        'depth=18))\n'))
    with pytest.raises(AssertionError, match='TINY_OVERRIDES'):
        shrink(cfg, 'child.py', str(tmp_path), str(tmp_path))


@pytest.mark.parametrize('backbone, neck', [
    ("dict(_delete_=True, type='ConvNeXt', arch='tiny', drop_path_rate=0.1)",
     'None'),
    ("dict(_delete_=True, type='SwinTransformer', arch='tiny', img_size=224,"
     ' drop_path_rate=0.1)',
     "dict(_delete_=True, type='GlobalAveragePooling')"),
])
def test_shrink_trains_other_backbone_families_without_overrides(
        backbone, neck, tmp_path, tiny_data):
    # what a new architecture's config gets without declaring anything
    cfg = _child_config(tmp_path, (
        f'model = dict(backbone={backbone}, neck={neck}, '
        "head=dict(_delete_=True, "
        "type='LinearClsHead', num_classes=1000, in_channels=768, "
        "loss=dict(type='cosub_mm.DeiT3BCELoss')))\n"))
    shrink(cfg, 'child.py', tiny_data, str(tmp_path))
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    assert 'train/loss_distill' in runner.message_hub.log_scalars
