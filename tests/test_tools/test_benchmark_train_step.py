"""tools/analysis_tools/benchmark_train_step.py in its --tiny mode: the
table and the JSON hold a number for every variant and column (timing
thresholds belong to the real run, not to a unit test)."""
import json
import math

import pytest

from conftest import run_tool

VARIANTS = ['baseline', 'cosub-masked', 'cosub-efficient']


def test_tiny_benchmark_reports_time_and_memory_ratios(tmp_path):
    out = tmp_path / 'bench.json'
    proc = run_tool([
        'tools/analysis_tools/benchmark_train_step.py', '--tiny', '--steps',
        '2', '--warmup', '1', '--batch-size', '4', '--json',
        str(out)
    ])
    rows = [l for l in proc.stdout.splitlines() if l.startswith('| ')]
    assert rows[0].startswith('| variant |') and len(rows) == 4
    for variant, row in zip(VARIANTS, rows[1:]):
        cells = [c.strip() for c in row.strip('|').split('|')]
        assert cells[0] == variant
        assert cells[1] == str(4 if variant == 'baseline' else 8)
        for cell in cells[2:]:
            assert math.isfinite(float(cell)), row
    assert 'cosub-efficient / cosub-masked: time' in proc.stdout
    assert ', malloc keep;' in proc.stdout  # the default

    results = json.loads(out.read_text())['results']
    assert list(results) == VARIANTS
    for r in results.values():
        assert len(r['times_s']) == 2 and all(t > 0 for t in r['times_s'])
        assert r['time_s'] == sorted(r['times_s'])[1] or \
            r['time_s'] == sum(r['times_s']) / 2  # median of two
        assert r['process_peak_mib'] > 100  # torch + mm* are resident
        assert r['step_peak_mib'] >= 0
    # the ratio column is the ratio of the medians
    base = results['baseline']['time_s']
    eff = [c.strip() for c in rows[3].strip('|').split('|')]
    assert float(eff[4]) == round(results['cosub-efficient']['time_s'] /
                                  base, 2)
    assert float(eff[3]) == round(4 / results['cosub-efficient']['time_s'],
                                  1)  # images/s of the unique images


def test_unshared_variant_and_glibc_default_malloc(tmp_path):
    out = tmp_path / 'bench.json'
    proc = run_tool([
        'tools/analysis_tools/benchmark_train_step.py', '--tiny', '--steps',
        '1', '--warmup', '1', '--batch-size', '4', '--no-memory', '--malloc',
        'default', '--variants', 'cosub-masked', 'cosub-efficient-unshared',
        '--json', str(out), '--md', str(tmp_path / 'bench.md')
    ])
    assert ', malloc default;' in proc.stdout
    # the generated markdown: the command without its outputs, the table
    md = (tmp_path / 'bench.md').read_text()
    assert '--malloc default --variants cosub-masked cosub-efficient-' \
        'unshared`; do not edit by hand' in md and '--md' not in md
    assert f'the record: `{out}`' in md
    assert md.count('| cosub-') == 2 and '1-min load at the start' in md
    assert 'cosub-efficient-unshared / cosub-masked: time' in proc.stdout
    results = json.loads(out.read_text())['results']
    assert list(results) == ['cosub-masked', 'cosub-efficient-unshared']
    assert all(r['time_s'] > 0 for r in results.values())


def test_planned_variants_report_the_branch_rows_they_computed(tmp_path):
    """At a drop rate that never drops (1e-9: a row drops when a uniform
    draw falls below it) every copy of an image stays its copy 0's twin, so
    a sharing plan computes each branch for copy 0 only: half the masked
    rows; without sharing, all of them."""
    out = tmp_path / 'bench.json'
    proc = run_tool([
        'tools/analysis_tools/benchmark_train_step.py', '--tiny', '--steps',
        '2', '--warmup', '1', '--batch-size', '4', '--no-memory',
        '--drop-path-rate', '1e-9', '--variants', 'cosub-masked',
        'cosub-efficient', 'cosub-efficient-unshared', '--json', str(out)
    ])
    results = json.loads(out.read_text())['results']
    assert 'computed_fraction' not in results['cosub-masked']
    assert results['cosub-efficient']['computed_fraction'] == 0.5
    assert results['cosub-efficient-unshared']['computed_fraction'] == 1.0
    assert "branch rows computed 0.500 (the submodel plans' bound" in \
        proc.stdout


def test_keep_freed_memory_keeps_big_blocks_resident(tmp_path):
    """glibc's default unmaps a freed 200 MiB block; 'keep' reuses it."""
    import subprocess
    import sys
    script = '''
import sys
sys.path.insert(0, 'tools/analysis_tools')
import benchmark_train_step as b
if sys.argv[1] == 'keep':
    b.keep_freed_memory()
import torch
def rss():
    return b._status_kib('VmRSS') / 1024
x = torch.ones(50 * 2**20)  # 200 MiB, touched
before = rss()
del x
print(before - rss())
'''
    freed = {}
    for mode in ('default', 'keep'):
        out = subprocess.run([sys.executable, '-c', script, mode],
                             capture_output=True, text=True, check=True)
        freed[mode] = float(out.stdout.split()[-1])
    assert freed['default'] > 190  # given back to the kernel at once
    assert freed['keep'] < 10  # kept for the next step


def test_config_gives_size_channels_classes_and_rate():
    """The demo config: 28 px grayscale, 10 classes, rate 0.1, its own
    preprocessor (one channel) and no Mixup."""
    proc = run_tool([
        'tools/analysis_tools/benchmark_train_step.py', '--config',
        'configs/demo/cosub_vit-6l-96d-p7_1xb256-adamw-700i_fashion-mnist'
        '.py', '--steps', '1', '--warmup', '1', '--batch-size', '4',
        '--no-memory', '--variants', 'baseline', 'cosub-efficient'
    ])
    assert '@28, batch 4 unique images, uniform drop path 0.1,' in \
        proc.stdout
    rows = [l for l in proc.stdout.splitlines() if l.startswith('| cosub')]
    assert len(rows) == 1 and float(rows[0].split('|')[3]) > 0


def test_segmentation_step_is_measured_for_every_variant(tmp_path):
    """--seg: UperNet on the backbone, CosubEncoderDecoder for cosub."""
    out = tmp_path / 'seg.json'
    proc = run_tool([
        'tools/analysis_tools/benchmark_train_step.py', '--seg', '--tiny',
        '--steps', '1', '--warmup', '1', '--batch-size', '2', '--no-memory',
        '--json', str(out)
    ])
    assert proc.stdout.startswith('UperNet + tiny ViT @64, batch 2')
    assert 'cosub-efficient / cosub-masked: time' in proc.stdout
    results = json.loads(out.read_text())['results']
    assert list(results) == ['baseline', 'cosub-masked', 'cosub-efficient']
    assert all(r['time_s'] > 0 for r in results.values())


def test_amp_and_device_are_checked_and_compile_doubles_the_runs():
    from conftest import load_tool
    tool = load_tool('tools/analysis_tools/benchmark_train_step.py')
    args = tool.parse_args(['--tiny', '--compile', 'both', '--amp'])
    assert args.amp == 'bf16'
    assert args.runs == ['baseline', 'baseline+compile', 'cosub-masked',
                         'cosub-masked+compile', 'cosub-efficient',
                         'cosub-efficient+compile']
    for argv, message in ((['--amp', 'fp16'], '--amp fp16 needs'),
                          (['--device', 'tpu'], "must be 'cpu' or 'cuda")):
        with pytest.raises(SystemExit):
            tool.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            tool.parse_args(['--device', 'cuda'])
    # the compiled run's backbone is compiled in place, the eager one not
    model = tool.build('cosub-efficient+compile', args)[0]
    assert model.backbone._compiled_call_impl is not None
    assert tool.build('cosub-efficient', args)[0] \
        .backbone._compiled_call_impl is None


def test_cpu_bf16_step_runs_under_autocast(tmp_path):
    out = tmp_path / 'bench.json'
    proc = run_tool([
        'tools/analysis_tools/benchmark_train_step.py', '--tiny', '--steps',
        '1', '--warmup', '0', '--batch-size', '4', '--no-memory', '--amp',
        'bf16', '--variants', 'cosub-efficient', '--json', str(out)
    ])
    assert 'cpu bf16' in proc.stdout
    from conftest import load_tool
    tool = load_tool('tools/analysis_tools/benchmark_train_step.py')
    model, wrapper, _ = tool.build('cosub-efficient',
                                   tool.parse_args(['--tiny', '--amp']))
    import torch
    with wrapper.optim_context(model):
        assert torch.is_autocast_enabled('cpu')
        assert torch.get_autocast_dtype('cpu') == torch.bfloat16


def test_compiled_runs_count_graph_breaks_and_the_plan_keeps_them_few():
    from conftest import load_tool
    tool = load_tool('tools/analysis_tools/benchmark_train_step.py')
    args = tool.parse_args(['--tiny', '--batch-size', '4', '--compile',
                            'on', '--no-memory', '--variants', 'cosub-masked',
                            'cosub-efficient', 'cosub-efficient-unshared'])
    counts = {v: tool.count_graph_breaks(v, args)
              for v in ('cosub-masked', 'cosub-efficient')}
    # the plan's draw (host-side) is the only break of the efficient loss
    assert counts['cosub-efficient']['graph_breaks'] <= 2
    assert counts['cosub-masked']['graph_breaks'] <= 2
    # without a plan, every branch would draw and sync: one break each
    import torch
    from cosub_mm.models.drop_path import planned_branches
    model = tool.build('cosub-efficient', args)[0]
    explained = torch._dynamo.explain(model.backbone)(
        torch.randn(4, 3, args.img_size, args.img_size))
    assert explained.graph_break_count >= len(
        planned_branches(model.backbone))
    results = {v: dict(time_s=1.0, images_per_s=4.0, **c)
               for v, c in counts.items()}
    args.runs = list(results)
    assert ('Graph breaks of one training loss (`torch._dynamo.explain('
            'model.loss)`): cosub-masked ') in tool.table(results, args)
