"""`make demo` (tools/demo.py) end to end, sizes shrunk by flags."""
import json
import os.path as osp
import re
import struct
import sys

import torch

from conftest import REPO, run_tool
from cosub_mm.fileio import safe_load

TINY = ['model.backbone.arch.embed_dims=32', 'model.backbone.arch.num_layers=2',
        'model.backbone.arch.num_heads=2',
        'model.backbone.arch.feedforward_channels=64',
        'model.head.in_channels=32', 'train_dataloader.batch_size=64']


def _png_size(path):
    with open(path, 'rb') as f:
        head = f.read(24)
    assert head[:8] == b'\x89PNG\r\n\x1a\n', path
    return struct.unpack('>II', head[16:24])


def test_demo_trains_exports_evaluates_and_reports(tmp_path):
    work_dir = str(tmp_path / 'demo')
    proc = run_tool(
        ['tools/demo.py', '--work-dir', work_dir, '--iters', '4',
         '--num-train', '256', '--num-test', '200', '--threads', '1',
         '--submodel-num-test', '100', '--submodel-num-random', '3',
         '--seg-num-train', '4', '--seg-num-val', '3', '--seg-size', '64',
         '--seg-data-root', str(tmp_path / 'scenes'), '--seg-iters', '2',
         '--cfg-options'] + TINY, timeout=900)
    out = proc.stdout
    with open(osp.join(work_dir, 'demo_results.json')) as f:
        summary = json.load(f)
    cosub = summary['results']['cosub']
    # runner log lines are streamed; the table repeats the final test top-1
    assert re.search(r'Iter\(train\) \[4/4\]', out)
    assert re.search(r'Iter\(test\) \[20/20\]', out)  # all 10,000 images
    logged = re.findall(r'accuracy/top1: ([\d.]+)', out)
    assert float(logged[-1]) == round(cosub['top1'], 4)
    assert f'| cosub | {cosub["top1"]:.2f} |' in out
    # the backbone export holds exactly the classifier's backbone weights
    ckpt = safe_load(cosub['checkpoint'])['state_dict']
    backbone = safe_load(summary['backbone'])['state_dict']
    assert set(backbone) == {k for k in ckpt if k.startswith('backbone.')}
    for key in backbone:
        torch.testing.assert_close(backbone[key], ckpt[key])
    # training, submodels, seg scenes, tools/infer.py's overlay of a scene
    assert len(summary['plots']) == 4
    assert summary['plots'][3].endswith('scene_00000_overlay.png')
    for png in summary['plots']:
        assert png in out
        width, height = _png_size(png)
        assert 400 <= width <= 2000 and 256 <= height <= 1200
    assert cosub['checkpoint'] in out
    seg = summary['seg']
    assert 0.0 <= seg['mIoU'] <= 100.0
    assert f"mIoU {seg['mIoU']:.2f}" in out
    assert f"best class {seg['best']}" in out
    assert f"worst {seg['worst']}" in out
    assert 'The cosub study' in out


def test_missing_fashion_mnist_names_the_fix(tmp_path):
    proc = run_tool(['tools/demo.py', '--data-root', str(tmp_path),
                     '--work-dir', str(tmp_path / 'w')], check=False)
    assert proc.returncode != 0
    assert 'make setup' in proc.stderr
    assert 'apt-get install dataset-fashion-mnist' in proc.stderr
    assert str(tmp_path) in proc.stderr


def test_record_from_a_run_writes_json_markdown_and_pngs(tmp_path):
    from PIL import Image
    plots = []
    for name in ('training.png', 'seg_predictions.png'):
        path = tmp_path / name
        Image.new('RGB', (8, 8)).save(path)
        plots.append(str(path))
    summary = dict(
        results=dict(cosub=dict(top1=80.891, submodel_mean=81.5,
                                last_half_removed=None, wall_s=100.4)),
        seg=dict(mIoU=22.6, best='grass', worst='shirt',
                 per_class=dict(grass=80.0, shirt=1.5), curve='100: 22.6',
                 flat='The mIoU curve has flattened.'),
        plots=plots, wall_s=600.2, load=None, threads=2,
        submodel_num_test=1000)
    src = tmp_path / 'demo_results.json'
    src.write_text(json.dumps(summary))
    record = tmp_path / 'out' / 'demo.json'
    run_tool(['tools/demo.py', '--record-from', str(src), '--record',
              str(record)])
    saved = json.loads(record.read_text())
    assert saved['results']['cosub']['top1'] == 80.891
    assert saved['pngs'] == ['demo_training.png', 'demo_seg_predictions.png']
    md = (tmp_path / 'out' / 'demo.md').read_text()
    assert '| cosub | 80.89 | 81.50 | - | 100 |' in md
    assert 'mIoU 22.60' in md and 'best class grass 80.00' in md
    # grass is a texture class, shirt a garment
    assert ('worst shirt 1.50; texture classes mean 80.00 (1), garment '
            'classes mean 1.50 (1).') in md
    assert ('10.0 min wall time (cosub training 1.7 min of it), 2 '
            'thread(s)') in md
    assert '![demo_training.png](demo_training.png)' in md
    assert (tmp_path / 'out' / 'demo_seg_predictions.png').is_file()


def test_committed_demo_record_is_rendered_and_names_the_current_study():
    """docs/results/demo.md is render_record(demo.json), and the study line
    in demo.json is the committed study's current headline."""
    sys.path.insert(0, osp.join(REPO, 'tools'))
    import demo
    path = osp.join(REPO, 'docs', 'results', 'demo.json')
    with open(path) as f:
        record = json.load(f)
    with open(osp.splitext(path)[0] + '.md') as f:
        assert f.read() == demo.render_record(record), (
            'docs/results/demo.md drifted: run tools/demo.py '
            '--refresh-record docs/results/demo.json')
    assert record['study'] == demo.study_headline(), (
        'docs/results/demo.json quotes an older study headline: run '
        'tools/demo.py --refresh-record docs/results/demo.json')


def test_the_seg_sentence_quotes_the_study_length_or_says_still_rising(
        monkeypatch, tmp_path):
    sys.path.insert(0, osp.join(REPO, 'tools'))
    import demo
    summary = dict(headlines=[dict(
        iters=2400, flat=True,
        length_checks=[[600, [[4, 26.0, 32.0]]], [1200, [[4, 32.0, 38.5]]],
                       [2400, [[4, 38.5, 38.7], [0, 37.0, 37.1]]]])])
    (tmp_path / 'docs' / 'results').mkdir(parents=True)
    with open(tmp_path / 'docs' / 'results' / 'fashion_scenes_summary.json',
              'w') as f:
        json.dump(summary, f)
    monkeypatch.setattr(demo, 'REPO', str(tmp_path))
    assert demo.seg_study_length() == (4, 600, 26.0, 2400, 38.5)
    flat = demo.flat_text([(500, 28.7), (600, 28.79)])
    assert flat.startswith('The mIoU curve levels off at the end of its '
                           '600-iteration schedule (last evaluation +0.09')
    assert 'from 26.00 mIoU at 600 iterations to 38.50 at 2400' in flat
    assert demo.SEG_STUDY in flat
    # a study that chose the demo's own length has nothing longer to quote
    summary['headlines'][0].update(iters=600, length_checks=[
        [600, [[4, 26.0, 26.2]]]])
    with open(tmp_path / 'docs' / 'results' / 'fashion_scenes_summary.json',
              'w') as f:
        json.dump(summary, f)
    flat = demo.flat_text([(500, 28.7), (600, 28.79)])
    assert 'still gains' not in flat and demo.SEG_STUDY in flat
    assert 'still rising' in demo.flat_text([(500, 20.0), (600, 23.0)])
    assert 'still rising' in demo.flat_text([(600, 23.0)])
