"""`make demo` (tools/demo.py) end to end, sizes shrunk by flags."""
import json
import os.path as osp
import re
import struct

import torch

from conftest import run_tool
from cosub_mm.compat import safe_load

TINY = ['model.backbone.arch.embed_dims=32', 'model.backbone.arch.num_layers=2',
        'model.backbone.arch.num_heads=2',
        'model.backbone.arch.feedforward_channels=64',
        'model.backbone.patch_size=7', 'model.head.in_channels=32',
        'train_dataloader.batch_size=64']


def _png_size(path):
    with open(path, 'rb') as f:
        head = f.read(24)
    assert head[:8] == b'\x89PNG\r\n\x1a\n', path
    return struct.unpack('>II', head[16:24])


def test_demo_trains_exports_evaluates_and_reports(tmp_path):
    work_dir = str(tmp_path / 'demo')
    proc = run_tool(
        ['tools/demo.py', '--work-dir', work_dir, '--epochs', '1',
         '--num-train', '256', '--num-test', '200', '--threads', '1',
         '--submodel-num-test', '100', '--submodel-num-random', '3',
         '--seg-num-train', '4', '--seg-num-val', '2', '--seg-size', '64',
         '--seg-cfg-options', 'train_cfg.max_iters=2',
         'train_cfg.val_interval=2', '--cfg-options'] + TINY, timeout=600)
    out = proc.stdout
    with open(osp.join(work_dir, 'demo_results.json')) as f:
        summary = json.load(f)
    cosub = summary['results']['cosub']
    # runner log lines are streamed; the table repeats the logged top-1
    assert re.search(r'Epoch\(train\) \[1\]\[4/4\]', out)
    logged = re.findall(r'accuracy/top1: ([\d.]+)', out)
    assert float(logged[-1]) == cosub['top1']
    assert f'| cosub | {cosub["top1"]:.2f} |' in out
    # the backbone export holds exactly the classifier's backbone weights
    ckpt = safe_load(cosub['checkpoint'])['state_dict']
    backbone = safe_load(summary['backbone'])['state_dict']
    assert set(backbone) == {k for k in ckpt if k.startswith('backbone.')}
    for key in backbone:
        torch.testing.assert_close(backbone[key], ckpt[key])
    for png in summary['plots']:
        assert png in out
        width, height = _png_size(png)
        assert 400 <= width <= 2000 and 300 <= height <= 1200
    assert cosub['checkpoint'] in out
    # segmentation: an mIoU once the scene set lands, else said unavailable
    if summary['miou'] is None:
        assert 'stage 4' in out and 'unavailable' in out
    else:
        assert 0.0 <= summary['miou'] <= 100.0
        assert f'mIoU {summary["miou"]:.2f}' in out
