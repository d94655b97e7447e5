"""tools/model_converters/mmpretrain_to_timm.py against timm itself.

Our tiny ViT / DeiT III classifiers (and the demo configs' models), with
random weights, are converted and loaded ``strict=True`` into timm models
built without pretrained weights; timm's logits must equal ours. The round
trip timm -> ours -> timm must give timm's keys and values back bit for bit.
"""
import logging
import os
import os.path as osp
import subprocess
import sys
from collections import OrderedDict
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope

import cosub_mm  # noqa: F401  (the stack fixes, DeiT III's ln2 among them)
from cosub_mm.engine.hooks import BackboneExportHook
from cosub_mm.fileio import UnsafeCheckpointError
from cosub_mm.registry import MODELS
from conftest import REPO, build_mmpretrain, load_tool

try:
    import timm
    from timm.models import VisionTransformer, load_checkpoint
except ImportError:  # a test dependency: fail loudly, never skip
    pytest.fail('timm is not installed: it is a test dependency, run '
                '`pip install -r requirements/tests.txt`', pytrace=False)

TOOLS = osp.join(REPO, 'tools', 'model_converters')
TOOL = osp.join(TOOLS, 'mmpretrain_to_timm.py')
DIM, DEPTH, HEADS, MLP, PATCH, IMG, CLASSES = 32, 2, 2, 64, 8, 32, 5
ARCH = dict(embed_dims=DIM, num_layers=DEPTH, num_heads=HEADS,
            feedforward_channels=MLP)
DEMO_CLS = ('configs/demo/'
            'cosub_vit-6l-96d-p7_1xb256-adamw-700i_fashion-mnist.py')
DEMO_SEG = 'configs/demo/upernet_fashion-scenes.py'


def _load(path, name):
    return load_tool(path)


@pytest.fixture(scope='module')
def tool():
    return _load(TOOL, 'm2t')


def _randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random values everywhere (LayerScale, norms, cls token, pos_embed),
    so that a swapped or skipped tensor changes the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model.eval()


def _ours(backbone: dict, head: str = 'VisionTransformerClsHead'):
    model = build_mmpretrain(dict(
        type='ImageClassifier', backbone=backbone,
        head=dict(type=head, num_classes=CLASSES, in_channels=DIM)))
    return _randomize(model)


def _logits(model, x, ours=True):
    with torch.no_grad():
        return model(x, mode='tensor') if ours else model(x)


# (our backbone, timm's named variant with the same arguments)
CASES = {
    'deit3': (dict(type='DeiT3', arch=ARCH, img_size=IMG, patch_size=PATCH),
              'deit3_small_patch16_224', {}),
    'vit': (dict(type='VisionTransformer', arch=ARCH, img_size=IMG,
                 patch_size=PATCH),
            'vit_small_patch16_224', {}),
    # no class token, patch-token average, pre-norm, LayerScale
    'vit-avg': (dict(type='VisionTransformer', arch=ARCH, img_size=IMG,
                     patch_size=PATCH, out_type='avg_featmap',
                     with_cls_token=False, final_norm=False, pre_norm=True,
                     layer_scale_init_value=0.1),
                'vit_small_patch16_224',
                dict(class_token=False, global_pool='avg', pre_norm=True,
                     init_values=0.1)),
}


@pytest.mark.parametrize('name', sorted(CASES))
@pytest.mark.parametrize('head', ['VisionTransformerClsHead',
                                  'LinearClsHead'])
def test_converted_model_gives_timm_our_logits(tool, name, head):
    backbone, variant, extra = CASES[name]
    ours = _ours(backbone, head)
    converted = tool.convert_to_timm(ours.state_dict())
    # timm's own variant, sized down by hand: independent of our kwargs
    reference = timm.create_model(
        variant, pretrained=False, img_size=IMG, patch_size=PATCH,
        embed_dim=DIM, depth=DEPTH, num_heads=HEADS, mlp_ratio=MLP / DIM,
        num_classes=CLASSES, **extra).eval()
    reference.load_state_dict(converted, strict=True)
    x = torch.randn(3, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))
    want = _logits(ours, x)
    assert want.abs().amax() > 1  # not a degenerate network
    torch.testing.assert_close(_logits(reference, x, ours=False), want,
                               rtol=1e-5, atol=1e-5)
    # the printed arguments build the same model
    from_kwargs = VisionTransformer(num_heads=HEADS,
                                    **tool.timm_kwargs(converted)).eval()
    from_kwargs.load_state_dict(converted, strict=True)
    torch.testing.assert_close(_logits(from_kwargs, x, ours=False), want,
                               rtol=1e-5, atol=1e-5)


def test_demo_classifier_gives_timm_its_logits(tool):
    """The demo's grayscale 28 px ViT, built from its config."""
    cfg = Config.fromfile(osp.join(REPO, DEMO_CLS))
    ours = _randomize(build_mmpretrain(cfg.model))
    arch = cfg.model.backbone.arch
    reference = VisionTransformer(
        img_size=cfg.model.backbone.img_size,
        patch_size=cfg.model.backbone.patch_size,
        in_chans=cfg.model.backbone.in_channels,
        embed_dim=arch.embed_dims, depth=arch.num_layers,
        num_heads=arch.num_heads,
        mlp_ratio=arch.feedforward_channels / arch.embed_dims,
        num_classes=cfg.model.head.num_classes).eval()
    reference.load_state_dict(tool.convert_to_timm(ours.state_dict()),
                              strict=True)
    x = torch.randn(4, cfg.model.backbone.in_channels, 28, 28,
                    generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(_logits(reference, x, ours=False),
                               _logits(ours, x), rtol=1e-5, atol=1e-5)


def test_demo_segmentor_backbone_gives_timm_its_tokens(tool):
    """--backbone-only on the demo UperNet: timm's final tokens are our
    backbone's last feature map."""
    cfg = Config.fromfile(osp.join(REPO, DEMO_SEG))
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope('mmseg'):
        seg = _randomize(MODELS.build(cfg.model))
    with pytest.raises(ValueError, match=r'\(auxiliary_head, decode_head, '
                       r'neck\).*--backbone-only'):
        tool.convert_to_timm(seg.state_dict())
    converted = tool.convert_to_timm(seg.state_dict(), backbone_only=True)
    assert not any(k.startswith(('head', 'decode', 'aux', 'neck'))
                   for k in converted)
    kwargs = tool.timm_kwargs(converted)
    assert kwargs['num_classes'] == 0
    reference = VisionTransformer(
        num_heads=cfg.model.backbone.arch.num_heads, **kwargs).eval()
    reference.load_state_dict(converted, strict=True)
    size = kwargs['img_size']
    x = torch.randn(2, kwargs['in_chans'], size, size,
                    generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = seg.backbone(x)[-1]  # (N, C, H, W) after the final norm
        tokens = reference.forward_features(x)[:, 1:]
    grid = size // kwargs['patch_size']
    torch.testing.assert_close(
        tokens.transpose(1, 2).reshape(ours.shape), ours, rtol=1e-5,
        atol=1e-5)
    assert ours.shape[-2:] == (grid, grid)


@pytest.mark.parametrize('name', ['deit3', 'vit'])
def test_round_trip_timm_ours_timm_is_bit_exact(tool, name):
    keys = _load(osp.join(TOOLS, 'vit_keys.py'), 'vit_keys_test')
    backbone, variant, _ = CASES[name]
    source = _randomize(timm.create_model(
        variant, pretrained=False, img_size=IMG, patch_size=PATCH,
        embed_dim=DIM, depth=DEPTH, num_heads=HEADS, mlp_ratio=MLP / DIM,
        num_classes=CLASSES))
    src = source.state_dict()
    ours = _ours(backbone)
    ours.load_state_dict(keys.timm_to_mmpretrain(src), strict=True)
    back = tool.convert_to_timm(ours.state_dict())
    assert list(back) == list(src)  # names and their order
    for key, value in src.items():
        assert back[key].dtype == value.dtype, key
        assert torch.equal(back[key], value), key


def test_deit_style_layer_scale_names_are_written_on_request(tool):
    state = _ours(CASES['deit3'][0]).state_dict()
    deit = tool.convert_to_timm(state, layer_scale='deit')
    assert 'blocks.0.gamma_1' in deit and 'blocks.1.gamma_2' in deit
    assert not any('ls1' in k or 'ls2' in k for k in deit)
    # the existing inverse of deit_to_mmpretrain.py shares the table
    d2m = _load(osp.join(TOOLS, 'deit_to_mmpretrain.py'), 'd2m_test')
    old = d2m.convert_mmpretrain_to_deit3(state)
    assert list(old) == list(deit)
    assert all(old[k] is deit[k] for k in deit)  # names only, same tensors


def _export_backbone(model, work_dir):
    """What BackboneExportHook writes at the end of training."""
    runner = SimpleNamespace(model=model, work_dir=str(work_dir), epoch=0,
                             iter=700, experiment_name='test',
                             logger=logging.getLogger('test'))
    BackboneExportHook().after_train(runner)
    return osp.join(work_dir, 'backbone.pth')


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_cli_exports_a_backbone_that_timm_loads(tool, tmp_path, capsys,
                                                suffix):
    ours = _ours(CASES['deit3'][0])
    src = _export_backbone(ours, tmp_path)
    dst = str(tmp_path / 'timm' / f'deit3{suffix}')
    tool.main([src, dst])
    printed = capsys.readouterr().out
    assert f'to {dst}' in printed and 'no_embed_class=True' in printed
    reference = timm.create_model(
        'deit3_small_patch16_224', pretrained=False, img_size=IMG,
        patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS,
        mlp_ratio=MLP / DIM, num_classes=0).eval()
    load_checkpoint(reference, dst, strict=True)  # timm's own loader
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        torch.testing.assert_close(reference(x), ours.backbone(x)[-1],
                                   rtol=1e-5, atol=1e-5)


def test_cli_reads_a_training_checkpoint_and_refuses_unsafe_pickles(
        tool, tmp_path):
    ours = _ours(CASES['vit'][0])
    hub = MessageHub.get_instance('test_mmpretrain_to_timm')
    hub.update_scalar('train/loss', 1.5)
    src, dst = str(tmp_path / 'iter_700.pth'), str(tmp_path / 'timm.pth')
    # like a runner's checkpoint: HistoryBuffers in the message hub; and a
    # data_preprocessor buffer, which is not part of the network
    state = OrderedDict(ours.state_dict())
    state['data_preprocessor.mean'] = torch.zeros(3, 1, 1)
    torch.save(dict(meta=dict(iter=700), state_dict=state,
                    message_hub=hub.state_dict()), src)
    tool.main([src, dst])
    out = torch.load(dst, weights_only=True)
    assert out['head.weight'].shape == (CLASSES, DIM)
    assert not any(k.startswith('data_preprocessor') for k in out)
    torch.save(dict(state_dict=state, hook=os.getcwd), src)
    with pytest.raises(UnsafeCheckpointError):
        tool.main([src, dst])


def test_what_timm_cannot_hold_is_refused_by_name(tool):
    vit = CASES['vit'][0]
    with pytest.raises(ValueError, match='No backbone'):
        tool.convert_to_timm({'layers.0.ln1.weight': torch.zeros(DIM)})
    hidden = build_mmpretrain(dict(
        type='ImageClassifier', backbone=vit,
        head=dict(type='VisionTransformerClsHead', num_classes=CLASSES,
                  in_channels=DIM, hidden_dim=16)))
    with pytest.raises(ValueError, match='pre_logits.*hidden_dim'):
        tool.convert_to_timm(hidden.state_dict())
    assert 'head.weight' not in tool.convert_to_timm(hidden.state_dict(),
                                                     backbone_only=True)
    both = _ours(dict(vit, out_type='avg_featmap')).state_dict()
    with pytest.raises(ValueError, match='ln1 and backbone.ln2'):
        tool.convert_to_timm(both)
    state = _ours(vit).state_dict()
    state['backbone.dist_token'] = torch.zeros(1, 1, DIM)
    with pytest.raises(ValueError, match='backbone.dist_token'):
        tool.convert_to_timm(state)


def test_timm_is_the_pinned_test_dependency_and_the_timm_extra(tmp_path):
    with open(osp.join(REPO, 'requirements', 'tests.txt')) as f:
        pins = dict(line.split('#')[0].strip().split('==')
                    for line in f if '==' in line)
    assert pins['timm'] == timm.__version__
    # `pip install cosub_mm[timm]` asks for the same pin
    subprocess.run([sys.executable, 'setup.py', '-q', 'egg_info',
                    '--egg-base', str(tmp_path)], cwd=REPO, check=True,
                   capture_output=True)
    (requires, ) = tmp_path.glob('*.egg-info/requires.txt')
    extras = requires.read_text().split('[timm]')[1].split('[')[0].split()
    assert extras == [f'timm=={timm.__version__}']
