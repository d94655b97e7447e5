"""tools/analysis_tools/benchmark_train_step.py --timm: timm's DeiT III in
mmpretrain's TIMMBackbone, measured with its efficient twin."""
import json
import math
import os.path as osp

import pytest

import cosub_mm  # noqa: F401  (before timm: the torchvision fix)
from conftest import REPO, load_tool, run_tool

TOOL = osp.join(REPO, 'tools', 'analysis_tools', 'benchmark_train_step.py')


def _tool():
    return load_tool(TOOL)


def test_timm_variants_build_timm_blocks_and_their_twins():
    bench = _tool()
    args = bench.parse_args(['--timm', '--tiny'])
    masked, _, _ = bench.build('cosub-masked', args)
    efficient, _, data = bench.build('cosub-efficient', args)
    for model, block in ((masked, 'Block'),
                         (efficient, 'EfficientTimmBlock')):
        assert type(model.backbone).__name__ == 'TIMMBackbone'
        assert [type(b).__name__ for b in
                model.backbone.timm_model.blocks] == [block, block]
        # the uniform rule reached the first block too
        assert [b.drop_path1.drop_prob for b in
                model.backbone.timm_model.blocks] == [0.2, 0.2]
    assert len(data['inputs']) == args.batch_size


def test_timm_run_reports_every_variant(tmp_path):
    out = tmp_path / 'timm.json'
    proc = run_tool([
        'tools/analysis_tools/benchmark_train_step.py', '--timm', '--tiny',
        '--steps', '1', '--warmup', '1', '--batch-size', '4', '--no-memory',
        '--json', str(out)
    ])
    # mmengine's INFO lines (TIMMBackbone's feature info) go to stdout too
    assert any(line.startswith('timm tiny ViT (TIMMBackbone) @32, batch 4')
               for line in proc.stdout.splitlines())
    assert 'cosub-efficient / cosub-masked: time' in proc.stdout
    results = json.loads(out.read_text())['results']
    assert list(results) == ['baseline', 'cosub-masked', 'cosub-efficient']
    assert all(math.isfinite(r['time_s']) and r['time_s'] > 0
               for r in results.values())


def test_timm_excludes_seg_and_config():
    bench = _tool()
    for extra in (['--seg'], ['--config', 'x.py']):
        with pytest.raises(SystemExit):
            bench.parse_args(['--timm'] + extra)
