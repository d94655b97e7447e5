"""tools/analysis_tools/replicate_fashion_mnist.py: run plan and the
generated results (no training: synthetic run results)."""
import os.path as osp
import re
import sys

import numpy as np

from conftest import REPO

sys.path.insert(0, osp.join(REPO, 'tools', 'analysis_tools'))
import replicate_fashion_mnist as rep  # noqa: E402


def test_plan_gives_the_baseline_twice_the_epochs_for_equal_compute():
    args = rep.parse_args(['--epochs', '10', '--seeds', '0', '1', '2'])
    runs = rep.plan_runs(args)
    assert [(r['method'], r['epochs'], r['seed']) for r in runs] == [
        (m, e, s) for s in (0, 1, 2)
        for m, e in (('cosub', 10), ('baseline', 10), ('baseline', 20))]
    for run in runs:
        opts = run['options']
        assert opts['train_cfg.max_epochs'] == run['epochs']
        assert opts['param_scheduler.1.end'] == run['epochs']
        assert opts['param_scheduler.0.end'] == run['epochs'] // 10
        assert opts['randomness.seed'] == run['seed']
        assert opts['model.backbone.layer_cfgs.drop_path_rate'] == 0.1
    # the same recipe apart from the schedule, the seed and cosub's λ
    strip = ('train_cfg.max_epochs', 'param_scheduler', 'randomness.seed',
             'model.cosub_loss')
    common = [{k: v for k, v in r['options'].items()
               if not k.startswith(strip)} for r in runs]
    assert all(c == common[0] for c in common)


def _results(values):
    out = []
    for (method, epochs), tops in values.items():
        for seed, top1 in enumerate(tops):
            out.append(dict(method=method, epochs=epochs, seed=seed,
                            top1=top1, wall_s=10.0 * epochs,
                            history=[dict(step=epochs, **{
                                'accuracy/top1': top1})]))
    return out


def _row(md, label, epochs):
    line = [ln for ln in md.splitlines()
            if ln.startswith(f'| {label} | {epochs} |')][0]
    return [c.strip() for c in line.strip('|').split('|')]


def test_results_report_mean_std_and_say_when_cosub_does_not_win():
    args = rep.parse_args(['--epochs', '10', '--seeds', '0', '1', '2'])
    cos, b1, b2 = [80.1, 80.9, 81.4], [78.0, 78.5, 79.3], [81.0, 82.0, 83.0]
    md = rep.summarise(args, _results({('cosub', 10): cos,
                                       ('baseline', 10): b1,
                                       ('baseline', 20): b2}), 'x.png')
    row = _row(md, 'cosub', 10)
    assert row[3] == f'{np.mean(cos):.2f} ± {np.std(cos, ddof=1):.2f}'
    assert row[4] == '80.10, 80.90, 81.40'
    delta_a = np.mean(cos) - np.mean(b1)
    assert f'cosub wins by {delta_a:+.2f} points' in md
    delta_b = np.mean(cos) - np.mean(b2)
    assert f'cosub does not win ({delta_b:+.2f} points' in md
    assert re.search(r'cosub / baseline at equal epochs: 1\.00x', md)


def test_partial_results_are_marked_incomplete():
    args = rep.parse_args(['--epochs', '10', '--seeds', '0'])
    md = rep.summarise(args, _results({('cosub', 10): [80.0]}), 'x.png',
                       missing=['baseline_10e_seed0', 'baseline_20e_seed0'])
    assert 'Incomplete: 2 run(s) not finished' in md
    assert _row(md, 'baseline', 20)[2] == '0'
    assert md.count('not measured (runs missing)') == 2
