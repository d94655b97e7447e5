"""tools/analysis_tools/replicate_fashion_mnist.py: statistics, records,
stale detection, the staged plan and the generated results (synthetic
records), and one real cosub run trained in pieces."""
import json
import os.path as osp
import sys

import numpy as np
import pytest
from mmengine.config import Config
from scipy import stats

from conftest import REPO
from cosub_mm import study

sys.path.insert(0, osp.join(REPO, 'tools', 'analysis_tools'))
import replicate_fashion_mnist as rep  # noqa: E402

COSUB = [80.1, 80.9, 81.4, 80.2, 81.0]
BASE = [79.0, 80.5, 80.3, 79.9, 80.1]


def test_paired_interval_equals_scipy_ttest_rel():
    iv = rep.paired_interval(COSUB, BASE)
    ref = stats.ttest_rel(COSUB, BASE).confidence_interval(0.95)
    d = np.subtract(COSUB, BASE)
    assert iv['n'] == 5
    assert iv['mean'] == pytest.approx(d.mean())
    assert iv['std'] == pytest.approx(d.std(ddof=1))
    assert iv['low'] == pytest.approx(ref.low)
    assert iv['high'] == pytest.approx(ref.high)
    # fixed numbers: mean 0.76, t(0.975, 4) = 2.7764
    assert iv['low'] == pytest.approx(0.76 - 2.776445 * d.std(ddof=1) / 5**.5)


def test_one_pair_has_no_interval():
    iv = rep.paired_interval([80.0], [79.0])
    assert iv['mean'] == pytest.approx(1.0) and iv['low'] is None


def test_run_config_holds_out_validation_and_keeps_the_test_set(tmp_path):
    spec = rep.make_spec('n5000', 'cosub', 2e-3, 0.05, 0.2, 1000, 3,
                         lam=0.25, loss='bce')
    path = tmp_path / 'c.py'
    path.write_text(rep.config_text(spec))
    cfg = Config.fromfile(str(path))
    assert cfg.train_dataloader.dataset.indices == 5000  # first 5,000
    val = cfg.val_dataloader.dataset
    assert val.split == 'train' and val.test_mode is False
    assert val.indices == list(range(55000, 60000))
    # the test set is the full, untouched test split
    test = cfg.test_dataloader.dataset
    assert test.test_mode is True and 'indices' not in test
    assert cfg.model.backbone.drop_path_rate == 0.2
    assert cfg.model.cosub_loss == dict(type='cosub_mm.CosubLoss',
                                        lambda_=0.25, loss_type='bce')
    assert cfg.optim_wrapper.optimizer.lr == 2e-3
    assert cfg.randomness.seed == 3
    assert cfg.train_cfg.val_interval == 100


def test_config_hash_ignores_the_seed_and_follows_the_recipe(tmp_path):
    a = rep.make_spec('n5000', 'baseline', 2e-3, 0.05, 0.1, 1000, 0)
    h = rep.config_hash(a, str(tmp_path))
    assert rep.config_hash(dict(a, seed=4), str(tmp_path)) == h
    assert rep.config_hash(dict(a, lr=1e-3), str(tmp_path)) != h
    assert rep.config_hash(dict(a, iters=2000), str(tmp_path)) != h


def _record(spec, work_dir, val, test, s_per_iter=0.5, hash_=None):
    name = rep.run_name(spec)
    return dict(name=name, spec=spec,
                config_hash=hash_ or rep.config_hash(spec, work_dir),
                num_train=1000, val_top1=val, best_val_top1=val,
                val_curve=[[spec['iters'], val]], test_top1=test,
                s_per_iter=s_per_iter, wall_s=100.0, load_end=[2.0, 2.0, 2.0])


def _write(records_dir, rec):
    path = osp.join(records_dir, rec['spec']['regime'], rec['name'] + '.json')
    import os
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(rec, f)


def test_records_round_trip_and_stale_ones_are_set_apart(tmp_path):
    wd, rd = str(tmp_path / 'work'), str(tmp_path / 'records')
    spec = rep.make_spec('quick', 'baseline', 2e-3, 0.05, 0.1, 20, 0)
    good = _record(spec, wd, 70.0, 69.0)
    old = _record(dict(spec, seed=1), wd, 71.0, 70.0, hash_='0' * 16)
    for rec in (good, old):
        _write(rd, rec)
    loaded = rep.load_records(rd, 'quick')
    assert sorted(r['name'] for r in loaded) == sorted(
        [good['name'], old['name']])
    assert {r['name']: r for r in loaded}[good['name']] == good
    valid, stale = rep.split_stale(loaded, wd)
    assert list(valid) == [good['name']] and stale == [old['name']]


def test_unreadable_record_names_the_file(tmp_path):
    folder = tmp_path / 'quick'
    folder.mkdir()
    (folder / 'broken.json').write_text('{"name": ')
    with pytest.raises(SystemExit, match='broken.json'):
        rep.load_records(str(tmp_path), 'quick')


def test_plan_stages_follow_the_records(tmp_path):
    wd = str(tmp_path)
    reg = rep.REGIMES['quick']
    t, grid = reg['iters'], reg['grid']
    plan = rep.Plan('quick', {})
    # stage 1: the baseline sweep (plus the likely first headline run)
    assert [s['arm'] for s in plan.runnable] == ['baseline'] * len(grid) + [
        'cosub']
    records = {}

    def add(spec, val, test, s_per_iter=0.5):
        rec = _record(spec, wd, val, test, s_per_iter)
        records[rec['name']] = rec

    vals = [70.0, 72.0]  # the second grid point wins on validation
    tests = [75.0, 60.0]  # ... though the first is better on test
    for g, v, te in zip(grid, vals, tests):
        add(plan.base(g, t, 0), v, te)
    plan = rep.Plan('quick', records)
    assert plan.best == grid[1]  # chosen on validation, not test
    assert plan.base(grid[1], 2 * t, 0) in plan.runnable
    add(plan.base(grid[1], 2 * t, 0), 72.3, 61.0)  # +0.3 < 0.5: converged
    add(plan.cosub(grid[1], t, 0), 73.0, 62.0, s_per_iter=0.8)
    plan = rep.Plan('quick', records)
    assert plan.length == t and plan.converged is True
    # equal compute waits for the side-by-side step cost, not the runs'
    # own wall time (0.8 / 0.5 here, measured at different loads)
    assert plan.needs_step_cost == grid[1][2]
    assert plan.equal_iters is None
    assert all(s['iters'] == t for s in plan.runnable)
    cost = {grid[1][2]: dict(name='dp0.1', ratio=1.6)}
    plan = rep.Plan('quick', records, cost)
    assert plan.needs_step_cost is None
    assert plan.compute_ratio == pytest.approx(1.6)
    assert plan.equal_iters == 32  # round(20 * 1.6)
    names = [rep.run_name(s) for s in plan.runnable]
    assert names[:2] == [rep.run_name(plan.cosub(grid[1], t, 1)),
                         rep.run_name(plan.base(grid[1], t, 1))]
    assert rep.run_name(plan.base(grid[1], 32, 0)) in names
    bce = plan.cosub(grid[1], t, 0, loss='bce')
    assert bce['loss'] == 'bce' and rep.run_name(bce) in names


def test_unconverged_baseline_doubles_its_length(tmp_path):
    wd = str(tmp_path)
    regime = dict(rep.REGIMES['quick'], max_doublings=1)
    rep.REGIMES['quick_x'] = regime
    try:
        t, grid = regime['iters'], regime['grid']
        records = {}
        for g, v in zip(grid, (70.0, 60.0)):
            spec = dict(rep.make_spec('quick_x', 'baseline', *g, t, 0))
            records[rep.run_name(spec)] = _record(spec, wd, v, v)
        spec = rep.make_spec('quick_x', 'baseline', *grid[0], 2 * t, 0)
        records[rep.run_name(spec)] = _record(spec, wd, 72.0, 72.0)
        plan = rep.Plan('quick_x', records)
        assert plan.length is None
        assert rep.make_spec('quick_x', 'baseline', *grid[0], 4 * t, 0) in \
            plan.runnable
    finally:
        del rep.REGIMES['quick_x']


def test_cosub_at_twice_the_length_meets_the_convergence_baseline(tmp_path):
    wd = str(tmp_path)
    regime = dict(rep.REGIMES['quick'], knobs=(rep.LONGER, ))
    rep.REGIMES['quick_x'] = regime
    try:
        t, grid = regime['iters'], regime['grid']
        plan = rep.Plan('quick_x', {})
        records = {}

        def add(spec, val, test):
            records[rep.run_name(spec)] = _record(spec, wd, val, test)

        add(plan.base(grid[0], t, 0), 72.0, 71.0)
        add(plan.base(grid[1], t, 0), 60.0, 60.0)
        add(plan.base(grid[0], 2 * t, 0), 72.2, 71.5)  # converged at t
        for seed in regime['seeds']:
            add(plan.cosub(grid[0], t, seed), 73.0, 72.0)
            add(plan.base(grid[0], t, seed), 72.0, 71.0)
        plan = rep.Plan('quick_x', records, {grid[0][2]: dict(ratio=1.5)})
        longer = plan.cosub(grid[0], t, 0, **rep.LONGER)
        assert longer['iters'] == 2 * t and longer['lam'] == 0.5
        assert longer in plan.runnable
        add(longer, 72.6, 72.5)
        plan = rep.Plan('quick_x', records, {grid[0][2]: dict(
            ratio=1.5, name='c', data_s=0.1, baseline_s=0.2, cosub_s=0.3)})
        lines, _ = rep.regime_summary(plan)
        md = '\n'.join(lines)
        assert f'| 2x the length ({2 * t} iterations) | 72.60 | 72.50 |' in md
        # seed 0 at both lengths, validation / test
        assert f'{t} (' in md and ': +1.00 / +1.00;' in md
        assert f'{2 * t} (' in md and ': +0.40 / +1.00.' in md
    finally:
        del rep.REGIMES['quick_x']


def test_summary_is_generated_from_the_records(tmp_path):
    wd, rd = str(tmp_path / 'work'), str(tmp_path / 'records')
    reg = rep.REGIMES['quick']
    t, grid = reg['iters'], reg['grid']
    plan = rep.Plan('quick', {})
    recs = [_record(plan.base(grid[0], t, 0), wd, 72.0, BASE[0]),
            _record(plan.base(grid[1], t, 0), wd, 70.0, 50.0),
            _record(plan.base(grid[0], 2 * t, 0), wd, 72.1, 79.5)]
    for seed, (c, b) in enumerate(zip(COSUB[:2], BASE[:2])):
        recs.append(_record(plan.cosub(grid[0], t, seed), wd, 73.0, c, 0.75))
        if seed:
            recs.append(_record(plan.base(grid[0], t, seed), wd, 72.0, b))
    recs.append(_record(plan.base(grid[0], t, 1), wd, 1.0, 1.0,
                        hash_='f' * 16))  # stale twin of a valid name
    for rec in recs[:-1]:
        _write(rd, rec)
    stale = dict(recs[-1], name='stale_run')
    _write(rd, stale)
    out_md = str(tmp_path / 'out' / 'fm.md')
    summary = rep.summarise(['quick'], rd, wd, out_md)
    md = open(out_md).read()
    iv = rep.paired_interval(COSUB[:2], BASE[:2])
    assert summary['headlines'][0]['equal_iterations'] == iv
    assert (f"{iv['mean']:+.2f} [{iv['low']:+.2f}, {iv['high']:+.2f}]"
            in md)
    assert f'| cosub | {t} | 2 | {rep.mean_std(COSUB[:2])} |' in md
    assert '**(chosen)**' in md and 'stale_run' in md
    assert 'no significant difference' in md
    assert osp.isfile(osp.join(tmp_path, 'out', 'fm.png'))
    with open(osp.join(tmp_path, 'out', 'fm_summary.json')) as f:
        assert json.load(f)['stale'] == ['quick/stale_run']


def test_committed_results_are_regenerated_from_committed_records(tmp_path):
    """docs/results/fashion_mnist.md is what --summarise-only writes."""
    out_md = str(tmp_path / 'fashion_mnist.md')
    rep.summarise([r for r in rep.REGIMES if r != 'quick'],
                  osp.join(REPO, 'docs', 'results', 'runs'),
                  str(tmp_path / 'work'), out_md)
    with open(osp.join(REPO, 'docs', 'results', 'fashion_mnist.md')) as f:
        committed = f.read()
    assert open(out_md).read() == committed, (
        'docs/results/fashion_mnist.md is not what the records give: run '
        'tools/analysis_tools/replicate_fashion_mnist.py --summarise-only')


def test_val_curve_restores_iterations_of_step0_logs():
    spec = rep.make_spec('n5000', 'baseline', 2e-3, 0.05, 0.1, 1000, 0)
    logged_at_0 = dict(spec=spec, val_curve=[[0, 70.0], [0, 75.0], [0, 80.]])
    assert rep.val_curve(logged_at_0) == [(100, 70.0), (200, 75.0),
                                          (300, 80.0)]
    right = dict(spec=spec, val_curve=[[100, 70.0], [200, 75.0]])
    assert rep.val_curve(right) == [(100, 70.0), (200, 75.0)]


def test_archived_protocols_are_counted_and_named(tmp_path):
    wd, rd = str(tmp_path / 'work'), str(tmp_path / 'records')
    spec = rep.make_spec('quick', 'baseline', 2e-3, 0.05, 0.1, 20, 0)
    old = osp.join(rd, rep.ARCHIVE, 'old-model')
    for seed in range(3):
        _write(osp.join(old), _record(dict(spec, seed=seed), wd, 1.0, 1.0))
    assert rep.archived(rd) == [(f'{rep.ARCHIVE}/old-model', 3)]
    out_md = str(tmp_path / 'fm.md')
    rep.summarise(['quick'], rd, wd, out_md)
    md = open(out_md).read()
    assert f'`{rep.ARCHIVE}/old-model/` (3 runs)' in md
    # archived records never count as the regime's own
    assert rep.load_records(rd, 'quick') == []


def test_epochs_follow_the_study_batch_size():
    batch = Config.fromfile(osp.join(REPO, rep.BASE_CFG)) \
        .train_dataloader.batch_size
    assert rep.epochs(1000, 5000) == pytest.approx(1000 * batch / 5000)


def test_step_cost_is_measured_side_by_side_and_recorded(tmp_path):
    wd, rd = str(tmp_path / 'work'), str(tmp_path / 'records')
    rec = rep.record_step_cost(0.1, rd, wd, steps=2)
    # cosub trains each image twice: a step costs more, data does not
    assert rec['cosub_s'] > rec['baseline_s'] > 0 and rec['data_s'] > 0
    assert rec['ratio'] == pytest.approx(
        (rec['data_s'] + rec['cosub_s']) / (rec['data_s'] + rec['baseline_s']))
    assert 1.0 < rec['ratio'] < 2.5
    assert rep.load_step_costs(rd, wd) == {0.1: rec}
    # another drop rate is another config: its record does not answer
    assert rep.step_cost_hash(0.2, wd) != rec['config_hash']
    stale = dict(rec, config_hash='0' * 16)
    study.write_record(rd, rep.STEP_COST_DIR, stale)
    assert rep.load_step_costs(rd, wd) == {}


def test_a_run_in_pieces_records_the_run_trained_in_one_go(tmp_path):
    """A quick cosub run stopped at its time limit after iteration 1 and
    continued ends with the weights, validation curve and test top-1 of
    the same config trained in one go (the runtime's ExactResumeHook)."""
    import torch

    from cosub_mm.runs import (check_fashion_mnist, metric_history,
                               read_scalars, train_config)
    check_fashion_mnist(osp.join(REPO, rep.DATA_ROOT))
    wd, rd = str(tmp_path / 'wd'), str(tmp_path / 'records')
    plan = rep.Plan('quick', {})
    spec = plan.cosub(rep.REGIMES['quick']['grid'][0], 20, 0)
    assert rep.execute(spec, wd, rd, 1, echo=lambda m: None,
                       hours=0) is None
    rec = rep.execute(spec, wd, rd, 1, echo=lambda m: None)
    assert [(p['from_step'], p['to_step']) for p in rec['pieces']] == [
        (0, 1), (1, 20)]
    ref = str(tmp_path / 'one_go')
    cfg = str(tmp_path / 'one_go.py')
    with open(cfg, 'w') as f:
        f.write(rep.config_text(spec))
    train_config(cfg, ref, ['--length', '20', '--test'], threads=1)
    assert rec['val_curve'] == metric_history(read_scalars(ref),
                                              'accuracy/top1')
    with open(osp.join(ref, 'test_metrics.json')) as f:
        assert rec['test_top1'] == json.load(f)['accuracy/top1']
    run_dir = osp.join(wd, 'quick', rep.run_name(spec))
    pieces, one_go = (torch.load(osp.join(d, 'iter_20.pth'),
                                 weights_only=False)['state_dict']
                      for d in (run_dir, ref))
    assert all(torch.equal(pieces[k], one_go[k]) for k in one_go)
