"""Crafted checkpoints are refused at every entry point (issues 7 and 17).

The crafted file holds the real weights of the tiny classifier plus a
pickled ``open(marker, 'w')`` call in ``meta``: a full unpickle would
create ``marker``. Every entry point, ``--resume`` included, must refuse it
with ``UnsafeCheckpointError`` naming the file, and ``marker`` must not
exist. Full unpickling needs the explicit opt-in ``--resume-unsafe``
(tested in test_resume_exact_and_atomic.py; see docs/reliability.md).
"""
import functools
import http.server
import os.path as osp
import threading

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import cosub_mm  # noqa: F401
from cosub_mm.fileio import UnsafeCheckpointError
from conftest import TEST_CONFIGS, make_cls_dataset, run_tool

TINY_CLS = osp.join(TEST_CONFIGS, 'tiny_cls.py')
TINY_SEG = osp.join(TEST_CONFIGS, 'tiny_upernet.py')


class _Payload:
    """Unpickling this creates a file: stands for any code execution."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


def _build(model: dict, scope: str):
    from mmengine.registry import MODELS
    with DefaultScope.overwrite_default_scope(scope):
        return MODELS.build(model)


def _tiny_cls_model():
    return _build(Config.fromfile(TINY_CLS).model, 'mmpretrain')


@pytest.fixture(scope='module')
def crafted(tmp_path_factory) -> dict:
    """A checkpoint with valid weights and a code-running payload."""
    folder = tmp_path_factory.mktemp('crafted')
    torch.manual_seed(0)
    state = _tiny_cls_model().state_dict()
    marker = str(folder / 'code_ran')
    path = str(folder / 'crafted.pth')
    torch.save({'state_dict': state, 'meta': {'x': _Payload(marker)}}, path)
    return dict(path=path, marker=marker, state=state, folder=folder)


def test_payload_is_live_under_full_unpickling(crafted, tmp_path):
    """Control: the same pickle does run code when fully unpickled."""
    path = str(tmp_path / 'copy.pth')
    marker = str(tmp_path / 'ran')
    torch.save({'meta': _Payload(marker)}, path)
    torch.load(path, weights_only=False)
    assert osp.exists(marker)


def _assert_refused(text: str, crafted: dict) -> None:
    assert 'UnsafeCheckpointError: Refusing to load ' + crafted['path'] \
        in text
    assert 'Unsupported global' in text
    assert not osp.exists(crafted['marker'])


@pytest.mark.parametrize('tool', ['test', 'train_load_from', 'train_resume'])
def test_tools_refuse_crafted_checkpoint(crafted, tool, tmp_path):
    root = make_cls_dataset(str(tmp_path / 'data'), per_class=1)
    roots = [f'{k}.dataset.data_root={root}' for k in
             ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    if tool == 'test':
        args = ['tools/test.py', TINY_CLS, crafted['path']]
    elif tool == 'train_resume':
        args = ['tools/train.py', TINY_CLS, '--resume', crafted['path']]
    else:
        args = ['tools/train.py', TINY_CLS]
        roots.append(f'load_from={crafted["path"]}')
    proc = run_tool(args + ['--work-dir', str(tmp_path / 'work'),
                            '--cfg-options'] + roots, check=False)
    assert proc.returncode != 0
    _assert_refused(proc.stderr, crafted)
    if tool == 'train_resume':  # the error names the opt-in, both forms
        assert (f'If you trust {crafted["path"]} (a checkpoint written by '
                'another tool), resume from it with full unpickling: '
                'tools/train.py --resume-unsafe, or resume_unsafe = True in '
                'the config.') in proc.stderr
        assert 'resumed epoch' not in proc.stdout
    assert not osp.exists(tmp_path / 'work' / 'iter_2.pth')  # no training


def test_mmpretrain_pretrained_init_refuses_crafted(crafted, tmp_path):
    cfg = Config.fromfile(TINY_CLS).model
    cfg.init_cfg = dict(type='Pretrained', checkpoint=crafted['path'])
    model = _build(cfg, 'mmpretrain')
    with pytest.raises(UnsafeCheckpointError) as err:
        model.init_weights()
    _assert_refused(f'UnsafeCheckpointError: {err.value}', crafted)
    # control: the same weights without the payload load weights-only
    benign = str(tmp_path / 'benign.pth')
    torch.save({'state_dict': crafted['state'], 'meta': {'seed': 0}}, benign)
    cfg.init_cfg = dict(type='Pretrained', checkpoint=benign)
    model = _build(cfg, 'mmpretrain')
    model.init_weights()
    for k, v in crafted['state'].items():
        assert torch.equal(model.state_dict()[k], v), k


def test_mmseg_pretrained_backbone_init_refuses_crafted(crafted):
    cfg = Config.fromfile(TINY_SEG).model
    cfg.backbone.init_cfg = dict(
        type='Pretrained', checkpoint=crafted['path'], prefix='backbone.')
    model = _build(cfg, 'mmseg')
    with pytest.raises(UnsafeCheckpointError) as err:
        model.init_weights()
    _assert_refused(f'UnsafeCheckpointError: {err.value}', crafted)



@pytest.fixture
def http_url(crafted):
    """Serve the crafted checkpoint's folder on a loopback HTTP server."""
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(crafted['folder']))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()
    server.server_close()


def test_pretrained_from_url_refuses_crafted(crafted, http_url, tmp_path,
                                             monkeypatch):
    """mmengine's http loader fully unpickled downloads (torch.hub's
    weights_only defaults to False); now it is weights-only too."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    benign = osp.join(str(crafted['folder']), 'benign.pth')
    torch.save({'state_dict': crafted['state']}, benign)
    cfg = Config.fromfile(TINY_CLS).model
    cfg.init_cfg = dict(type='Pretrained',
                        checkpoint=f'{http_url}/crafted.pth')
    model = _build(cfg, 'mmpretrain')
    with pytest.raises(UnsafeCheckpointError) as err:
        model.init_weights()
    assert 'Unsupported global' in str(err.value)
    assert not osp.exists(crafted['marker'])
    # control: a benign download loads, cached under TORCH_HOME
    cfg.init_cfg = dict(type='Pretrained', checkpoint=f'{http_url}/benign.pth')
    model = _build(cfg, 'mmpretrain')
    model.init_weights()
    for k, v in crafted['state'].items():
        assert torch.equal(model.state_dict()[k], v), k
    assert osp.exists(tmp_path / 'torch_home' / 'hub' / 'checkpoints' /
                      'benign.pth')


def test_backbone_export_loads_weights_only_and_crafted_one_is_refused(
        crafted, tmp_path):
    """BackboneExportHook's backbone.pth feeds mmseg's Pretrained init: the
    real export loads weights-only, a crafted file in its place does not."""
    from types import SimpleNamespace

    from cosub_mm.engine.hooks import BackboneExportHook
    classifier = _tiny_cls_model()
    runner = SimpleNamespace(
        model=classifier, work_dir=str(tmp_path), epoch=0, iter=4,
        experiment_name='export', logger=SimpleNamespace(info=print))
    BackboneExportHook().after_train(runner)
    export = str(tmp_path / 'backbone.pth')

    cfg = Config.fromfile(TINY_SEG).model
    cfg.backbone.init_cfg = dict(
        type='Pretrained', checkpoint=export, prefix='backbone.')
    segmentor = _build(cfg, 'mmseg')
    segmentor.init_weights()
    for k, v in classifier.backbone.state_dict().items():
        if k.startswith('layers.0.'):
            assert torch.equal(segmentor.backbone.state_dict()[k], v), k

    state = {k: v for k, v in classifier.state_dict().items()
             if k.startswith('backbone.')}
    torch.save({'state_dict': state, 'meta': _Payload(crafted['marker'])},
               export)
    segmentor = _build(cfg, 'mmseg')
    with pytest.raises(UnsafeCheckpointError, match='backbone.pth'):
        segmentor.init_weights()
    assert not osp.exists(crafted['marker'])
