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

The tests after those check the recipe against the authors' code
(facebookresearch/deit ``README_revenge.md``, ``main.py``, ``models_v2.py``):
the evaluation crop ratio, the DeiT III init, LAMB's eps, and the 224 px
finetuning stage, which is also trained from a tiny 192 px stand-in
checkpoint (patch 8: a 3x3 position grid resized to 4x4).
"""
import copy
import glob
import math
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.hooks import Hook
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
    # a 2-block timm DeiT III, patch 8 on 32 px
    'mmpretrain.TIMMBackbone': {
        'model.backbone.img_size': 32,
        'model.backbone.patch_size': 8,
        'model.backbone.embed_dim': 32,
        'model.backbone.depth': 2,
        'model.backbone.num_heads': 2,
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


def _shrink_pipeline(pipeline, px: int = TINY_PX):
    for t in pipeline or []:
        for key in ('scale', 'crop_size', 'size'):
            if key in t and isinstance(t[key], (int, tuple, list)):
                t[key] = px
        for key in ('transforms', ):  # wrappers such as RandomChoice
            for sub in t.get(key) or []:
                _shrink_pipeline(sub if isinstance(sub, list) else [sub], px)


def _find_pipeline(dataset):
    while dataset is not None and 'pipeline' not in dataset:
        dataset = dataset.get('dataset')
    return [] if dataset is None else dataset['pipeline']


def _backbone_cls(cfg):
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.get(cfg.model.backbone['type'])


def _set_head_channels(cfg, px: int = TINY_PX):
    """Set head.in_channels from a forward pass of the tiny backbone."""
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        backbone = MODELS.build(copy.deepcopy(cfg.model.backbone))
        neck = cfg.model.get('neck')
        neck = MODELS.build(copy.deepcopy(neck)) if neck else None
    with torch.no_grad():
        feats = backbone(torch.zeros(1, 3, px, px))
        if neck is not None:
            feats = neck(feats)
    last = feats[-1]
    last = last[-1] if isinstance(last, (list, tuple)) else last
    cfg.model.head.in_channels = int(last.shape[1])


def tiny_overrides(cfg: Config) -> dict:
    """The :data:`TINY_OVERRIDES` entry of the config's backbone type."""
    return dict(TINY_OVERRIDES.get(cfg.model.backbone['type'], {}))


def shrink(cfg: Config, name: str, data_root: str, work_dir: str,
           px: int = TINY_PX) -> None:
    """Make a classification config tiny (see the module docstring); ``px``
    replaces every image size (default :data:`TINY_PX`)."""
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
        backbone.img_size = px
    for key, value in overrides.items():
        *parents, leaf = key.split('.')
        node = cfg
        for part in parents:
            node = node[part]
        node[leaf] = value  # replaces (a str arch may become a dict)
    if not any(k.startswith('model.head.in_channels') for k in overrides):
        _set_head_channels(cfg, px)

    for key, split in (('train_dataloader', 'train'),
                       ('val_dataloader', 'val'), ('test_dataloader',
                                                   'val')):
        loader = cfg.get(key)
        if not loader:
            continue
        pipeline = copy.deepcopy(_find_pipeline(loader.dataset))
        _shrink_pipeline(pipeline, px)
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
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):  # e.g. not a list of init_cfgs
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
    allowed = ['type', 'cosub_loss', 'backbone.init_cfg.checkpoint',
               'init_cfg.checkpoint']
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


# ---------------------------------------------------------------------------
# Recipe fidelity against facebookresearch/deit (README_revenge.md commands,
# main.py defaults, models_v2.py): values transcribed from there.
# ---------------------------------------------------------------------------
DEIT3_CONFIGS = [p for p in CONFIGS if 'deit3-' in osp.basename(p)
                 and 'timm-' not in osp.basename(p)]
TIMM_CONFIGS = [p for p in CONFIGS if 'timm-' in osp.basename(p)]
# models_v2.py vit_models(init_scale=1e-4): the LayerScale init of DeiT III
DEIT3_LAYER_SCALE = 1e-4
FINETUNES_224 = [p for p in CONFIGS if '_in1k-192px-pre_' in osp.basename(p)]


def _test_pipelines(cfg):
    pipelines = [cfg.get('test_pipeline')]
    for key in ('val_dataloader', 'test_dataloader'):
        if cfg.get(key):
            pipelines.append(_find_pipeline(cfg[key].dataset))
    return [p for p in pipelines if p]


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_eval_crop_ratio_is_one(path):
    # every DeiT III / cosub command: --eval-crop-ratio 1.0, i.e. deit's
    # datasets.py Resize(int(input_size / 1.0), bicubic) + CenterCrop
    cfg = Config.fromfile(path)
    pipelines = _test_pipelines(cfg)
    assert pipelines, 'no test pipeline found'
    img_size = cfg.model.backbone.get('img_size')
    for pipeline in pipelines:
        types = [t['type'] for t in pipeline]
        resize = pipeline[types.index('ResizeEdge')]
        crop = pipeline[types.index('CenterCrop')]
        assert resize['edge'] == 'short'
        assert resize['interpolation'] == 'bicubic'
        assert crop['crop_size'] / resize['scale'] == 1.0
        if img_size is not None:
            assert crop['crop_size'] == img_size


def _from_checkpoint(cfg) -> bool:
    """Whether the backbone's weights, LayerScale included, are loaded."""
    inits = [cfg.model.get('init_cfg'), cfg.model.backbone.get('init_cfg')]
    return any(isinstance(i, dict) and i.get('type') == 'Pretrained'
               for i in inits)


@pytest.mark.parametrize('path', TIMM_CONFIGS, ids=osp.basename)
def test_timm_deit3_config_inits_layer_scale_and_linears_as_the_authors(
        path):
    """timm initialises its own ViT (the config's mmpretrain init_cfg is
    dropped): Linears trunc-normal(0.02) with bias 0 and, through
    ``init_values``, LayerScale 1e-4 as models_v2.py."""
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(path)
    assert cfg.model.backbone.type == 'mmpretrain.TIMMBackbone'
    assert cfg.model.get('init_cfg') is None
    for key, value in TINY_OVERRIDES['mmpretrain.TIMMBackbone'].items():
        cfg.model.backbone[key.split('.')[-1]] = value
    cfg.model.head.in_channels = 32
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    vit = model.backbone.timm_model
    gammas = [m.gamma for n, m in vit.named_modules()
              if type(m).__name__ == 'LayerScale']
    assert len(gammas) == 4  # 2 blocks x (attention, MLP)
    assert all(torch.all(g == DEIT3_LAYER_SCALE) for g in gammas)
    fc = vit.blocks[1].mlp.fc1
    assert abs(fc.weight.std().item() - 0.02) < 0.003
    assert torch.all(fc.bias == 0)


@pytest.mark.parametrize('path', DEIT3_CONFIGS, ids=osp.basename)
def test_deit3_init_is_the_authors(path):
    from mmpretrain.models.utils import LayerScale
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(path)
    assert cfg.model.backbone.type == 'DeiT3'
    if _from_checkpoint(cfg):
        # finetuning: LayerScale comes from the pretraining checkpoint, whose
        # config is one of the from-scratch ones checked here
        checkpoint = (cfg.model.get('init_cfg')
                      or cfg.model.backbone.init_cfg).checkpoint
        source = checkpoint.split('/')[1]
        assert osp.isfile(osp.join(CONFIG_DIR, source + '.py')), checkpoint
        return
    # the config's init on a 2-block backbone (the init does not depend on
    # the size); a 32-wide head
    cfg.model.backbone.arch = TINY_ARCH['vit']
    cfg.model.backbone.img_size = TINY_PX
    cfg.model.head.in_channels = TINY_ARCH['vit']['embed_dims']
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    torch.manual_seed(0)
    model.init_weights()
    scales = [m.weight for m in model.backbone.modules()
              if isinstance(m, LayerScale)]
    assert len(scales) == 2 * TINY_ARCH['vit']['num_layers']
    for weight in scales:
        assert torch.all(weight == DEIT3_LAYER_SCALE)
    # models_v2.py _init_weights: trunc_normal_(std=.02), bias 0, for the
    # head too (mmpretrain's VisionTransformerClsHead would start at zero)
    head = model.head.layers.head
    assert abs(head.weight.std().item() - 0.02) < 0.001
    assert abs(head.weight.mean().item()) < 0.001
    assert torch.all(head.bias == 0)
    # ... and for the FFN Linears, which mmpretrain re-initialises with
    # Xavier-uniform after init_cfg (std 0.144 at this width), and
    # trunc_normal_(cls_token, std=.02) (mmpretrain: zero): the config
    # lists cosub_mm.DeiT3AuthorsInit (tests/test_stack/test_deit3.py)
    assert dict(type='cosub_mm.DeiT3AuthorsInit') in cfg.model.init_cfg
    ffn = [m for layer in model.backbone.layers for m in layer.ffn.modules()
           if isinstance(m, torch.nn.Linear)]
    assert len(ffn) == 2 * TINY_ARCH['vit']['num_layers']
    for fc in ffn:
        assert abs(fc.weight.std().item() - 0.02) < 0.003
        assert torch.all(fc.bias == 0)
    cls_token = model.backbone.cls_token
    assert torch.count_nonzero(cls_token) == cls_token.numel()
    assert abs(cls_token.std().item() - 0.02) < 0.01


# The other architectures' LayerScale init, from their authors' code
OTHER_LAYER_SCALE = {
    # facebookresearch/ConvNeXt models/convnext.py layer_scale_init_value
    'convnext-base_8xb256-lamb-800e_in1k.py': 1e-6,
    # facebookresearch/xcit xcit.py: eta of xcit_small_12_p16 / medium_24
    'xcit-small-12-p16_8xb256-lamb-800e_in1k.py': 1.0,
    'xcit-medium-24-p16_8xb256-lamb-800e_in1k.py': 1e-5,
}


@pytest.mark.parametrize('name', sorted(OTHER_LAYER_SCALE))
def test_other_architectures_layer_scale_is_their_authors(name):
    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    assert cfg.model.backbone.layer_scale_init_value == \
        OTHER_LAYER_SCALE[name]


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_lamb_eps_is_deits_opt_eps(path):
    optimizer = Config.fromfile(path).optim_wrapper.optimizer
    if optimizer['type'] == 'Lamb':
        assert optimizer['eps'] == 1e-8  # deit main.py --opt-eps default


def test_finetune_224_configs_were_found():
    names = sorted(osp.basename(p) for p in FINETUNES_224)
    assert len(names) == 4  # B and L, each with its cosub twin
    assert sum(n.startswith('cosub_') for n in names) == 2


# README_revenge.md, "finetuning for ViT-B, L and H at resolution 224x224"
# (+ main.py defaults for the flags it does not pass)
README_REVENGE_FT224 = dict(
    lr=1e-5, weight_decay=0.1, opt_eps=1e-8, epochs=20, warmup_epochs=5,
    warmup_lr=1e-6, min_lr=1e-5, batch=64 * 8, smoothing=0.1, mixup=0.8,
    cutmix=1.0, input_size=224, drop_path={'b': 0.2, 'l': 0.45},
    rand_augment=dict(num_policies=2, magnitude_level=9, magnitude_std=0.5,
                      total_level=10, policies='timm_increasing'))


@pytest.mark.parametrize('path', FINETUNES_224, ids=osp.basename)
def test_finetune_224_follows_readme_revenge(path):
    ref = README_REVENGE_FT224
    cfg = Config.fromfile(path)
    opt = cfg.optim_wrapper.optimizer
    assert opt.type == 'AdamW'
    assert (opt.lr, opt.weight_decay, opt.eps) == (
        ref['lr'], ref['weight_decay'], ref['opt_eps'])
    assert cfg.optim_wrapper.paramwise_cfg.flat_decay_mult == 0.0
    assert cfg.train_cfg.max_epochs == ref['epochs']
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and warmup.end == ref['warmup_epochs']
    assert warmup.start_factor * opt.lr == pytest.approx(ref['warmup_lr'])
    assert cosine.eta_min == ref['min_lr'] and cosine.end == ref['epochs']
    gpus, per_gpu = re.search(r'_(\d+)xb(\d+)-', osp.basename(path)).groups()
    assert int(per_gpu) == cfg.train_dataloader.batch_size
    assert int(gpus) * int(per_gpu) == ref['batch']
    assert cfg.auto_scale_lr.base_batch_size == ref['batch']

    backbone = cfg.model.backbone
    assert backbone.img_size == ref['input_size']
    assert backbone.drop_path_rate == ref['drop_path'][backbone.arch]
    augments = {a.type: a.alpha for a in cfg.model.train_cfg.augments}
    assert augments == {'Mixup': ref['mixup'], 'CutMix': ref['cutmix']}
    if cfg.model.type == 'cosub_mm.CosubClassifier':
        # --cosub forces BCE; the targets stay soft (no --bce-loss)
        loss = cfg.model.cosub_loss
        assert loss.label_smooth_val == ref['smoothing']
        assert loss.binarize_target is False
    else:
        loss = cfg.model.head.loss
        assert loss.type == 'LabelSmoothLoss' and loss.mode == 'original'
        assert loss.label_smooth_val == ref['smoothing']

    pipeline = cfg.train_dataloader.dataset.pipeline
    types = [t['type'] for t in pipeline]
    assert types == ['LoadImageFromFile', 'RandomResizedCrop', 'RandomFlip',
                     'RandAugment', 'PackInputs']  # no 3-Augment, no jitter
    rand_augment = pipeline[types.index('RandAugment')]
    for key, value in ref['rand_augment'].items():
        assert rand_augment[key] == value, key
    sampler = cfg.train_dataloader.sampler
    assert sampler.type == 'cosub_mm.SampleSeedSampler'
    assert sampler.sampler.type == 'DefaultSampler'  # no RA
    hooks = [h['type'] for h in cfg.custom_hooks]
    assert 'cosub_mm.DropPathRateHook' in hooks  # models_v2: dpr constant


class _CaptureInitialWeights(Hook):
    """The model's weights as training starts (after init and loading)."""

    def before_train(self, runner) -> None:
        self.state = {k: v.detach().clone()
                      for k, v in runner.model.state_dict().items()}


@pytest.mark.parametrize('path', FINETUNES_224, ids=osp.basename)
def test_finetune_224_starts_from_tiny_192px_checkpoint(path, tiny_data,
                                                         tmp_path):
    cfg = Config.fromfile(path)
    match = re.fullmatch(r'work_dirs/(.+)/epoch_(\d+)\.pth',
                         cfg.model.init_cfg.checkpoint)
    assert cfg.model.init_cfg.type == 'Pretrained' and match
    source_path = osp.join(CONFIG_DIR, match.group(1) + '.py')
    src = Config.fromfile(source_path)
    # the 192 px model of the same kind and size, its last checkpoint
    assert src.model.backbone.img_size == 192
    assert cfg.model.backbone.img_size == 224
    assert src.model.backbone.arch == cfg.model.backbone.arch
    assert src.model.type == cfg.model.type
    assert int(match.group(2)) == src.train_cfg.max_epochs

    # a tiny stand-in of the 192 px stage: patch 8 at 24 px (3x3 grid)
    shrink(src, osp.basename(source_path), tiny_data, str(tmp_path / 'src'),
           px=24)
    src.model.backbone.patch_size = 8
    src_runner = Runner.from_cfg(src)
    src_runner.train()
    src_runner.save_checkpoint(str(tmp_path), 'tiny_192px.pth')
    ckpt = torch.load(str(tmp_path / 'tiny_192px.pth'), weights_only=False)
    ckpt = ckpt['state_dict']
    assert ckpt['backbone.pos_embed'].shape[1] == 3 * 3

    # the finetuning config at 32 px (4x4 grid) from that checkpoint
    name = osp.basename(path)
    shrink(cfg, name, tiny_data, str(tmp_path / 'ft'))
    cfg.model.backbone.patch_size = 8
    cfg.model.init_cfg = dict(type='Pretrained',
                              checkpoint=str(tmp_path / 'tiny_192px.pth'))
    runner = Runner.from_cfg(cfg)
    capture = _CaptureInitialWeights()
    runner.register_hook(capture, priority='HIGHEST')
    runner.train()
    assert runner.iter == 2
    assert math.isfinite(runner.message_hub.get_scalar('train/loss').current())

    start = capture.state
    # pos_embed resized as deit main.py --finetune does: bicubic,
    # align_corners=False, on the (1, C, 3, 3) grid
    dims = ckpt['backbone.pos_embed'].shape[-1]
    grid = ckpt['backbone.pos_embed'].reshape(1, 3, 3, dims)
    grid = grid.permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(
        grid, size=(4, 4), mode='bicubic', align_corners=False)
    expected = expected.permute(0, 2, 3, 1).flatten(1, 2)
    assert torch.allclose(start['backbone.pos_embed'], expected, atol=1e-6)
    # everything else, head included (--finetune keeps it), as trained
    for key, value in ckpt.items():
        if key != 'backbone.pos_embed':
            assert torch.equal(start[key], value), key
    assert set(ckpt) == set(start)
