"""tools/analysis_tools/compare_seg_init.py: the plan, hashes tied to the
backbone's run, the generated summary (synthetic records), and one real
finetuning step from a classifier of the classification study's config."""
import json
import os.path as osp
import sys

import pytest
from mmengine.config import Config

from conftest import REPO

sys.path.insert(0, osp.join(REPO, 'tools', 'analysis_tools'))
import compare_seg_init as seg  # noqa: E402
import replicate_fashion_mnist as rep  # noqa: E402

from cosub_mm import study  # noqa: E402


def _cls_records(records_dir, work_dir):
    """A decided quick classification plan: sweep, convergence, pair 0."""
    reg = rep.REGIMES['quick']
    t, grid = reg['iters'], reg['grid']
    plan = rep.Plan('quick', {})
    specs = [plan.base(grid[0], t, 0), plan.base(grid[1], t, 0),
             plan.base(grid[0], 2 * t, 0)]
    specs += [plan.cosub(grid[0], t, s) for s in (0, 1)]
    specs += [plan.base(grid[0], t, 1)]
    for sp in specs:
        rec = dict(name=rep.run_name(sp), spec=sp,
                   config_hash=rep.config_hash(sp, work_dir),
                   val_top1=70.0 if sp['lr'] == grid[0][0] else 60.0,
                   test_top1=70.0, s_per_iter=0.5, wall_s=1.0,
                   val_curve=[[sp['iters'], 70.0]], load_end=[0, 0, 0])
        study.write_record(records_dir, 'quick', rec)
    return grid[0], t


@pytest.fixture
def quick_study(tmp_path):
    cls_rd, cls_wd = str(tmp_path / 'cls_records'), str(tmp_path / 'cls')
    best, t = _cls_records(cls_rd, cls_wd)
    st = seg.Study('quick', str(tmp_path / 'seg'), str(tmp_path / 'recs'),
                   cls_wd, cls_rd)
    assert st.cls_plan.best == best and st.cls_plan.length == t
    return st


def _seg_record(st, spec, miou):
    return dict(name=seg.run_name(spec), spec=spec,
                config_hash=st.config_hash(spec), mIoU=miou,
                best_mIoU=miou, aAcc=90.0, curve=[[spec['iters'], miou]],
                s_per_iter=0.3, wall_s=10.0)


def test_backbones_are_the_classification_headline_of_each_seed(
        quick_study):
    st = quick_study
    cos = st.cls_spec('cosub', 1)
    assert cos['arm'] == 'cosub' and cos['seed'] == 1
    assert cos['iters'] == st.cls_plan.length
    assert st.cls_spec('baseline', 1)['arm'] == 'baseline'
    assert st.cls_spec('random', 1) is None


def _check(st, records, n, seed, a, b):
    """Record the baseline-init length check ``n -> 2n`` of one seed."""
    for length, miou in ((n, a), (2 * n, b)):
        sp = seg.make_spec('quick', 'baseline', 'plain', length, seed)
        records[seg.run_name(sp)] = _seg_record(st, sp, miou)


def _arms(st, length):
    return [seg.run_name(seg.make_spec('quick', i, f, length, s))
            for s in st.reg['seeds'] for i, f in seg.ARMS]


def _checked(st, max_doublings, a, b):
    """Allow ``max_doublings``; record seed 0's check ``t -> 2t`` as
    ``a -> b``. Returns ``t`` and the records."""
    st.reg = dict(st.reg, max_doublings=max_doublings)
    t = st.reg['iters']
    records = {}
    _check(st, records, t, 0, a, b)
    return t, records


def _fill_arms(st, records, length, miou):
    """Record every arm of every seed at ``length`` that is not recorded,
    with ``miou(arm index, seed)``."""
    for k, (init, ft) in enumerate(seg.ARMS):
        for seed in st.reg['seeds']:
            sp = seg.make_spec('quick', init, ft, length, seed)
            records.setdefault(seg.run_name(sp),
                               _seg_record(st, sp, miou(k, seed)))


def test_plan_checks_the_length_then_runs_every_arm(quick_study):
    st = quick_study
    st.reg = dict(st.reg, max_doublings=1)
    t = st.reg['iters']
    plan = st.plan({})
    assert plan['length'] is None
    assert [seg.run_name(s) for s in plan['runnable']] == [
        seg.run_name(seg.make_spec('quick', 'baseline', 'plain', n, 0))
        for n in (t, 2 * t)]
    records = {}
    _check(st, records, t, 0, 30.0, 30.2)  # +0.2: flat
    plan = st.plan(records)
    assert plan['length'] == t and plan['flat'] is True
    assert {seg.run_name(s) for s in plan['runnable']} == \
        set(_arms(st, t)) - set(records)


def test_a_stop_is_decided_on_the_mean_gain_of_the_check_seeds(
        quick_study):
    st = quick_study
    st.reg = dict(st.reg, check_seeds=2, max_doublings=2)
    t = st.reg['iters']
    base = lambda n, s: seg.run_name(  # noqa: E731
        seg.make_spec('quick', 'baseline', 'plain', n, s))
    records = {}
    _check(st, records, t, 0, 30.0, 35.0)  # +5 on the first seed: double
    plan = st.plan(records)
    assert plan['checks'] == [(t, [(0, 30.0, 35.0)])]
    assert [seg.run_name(s) for s in plan['runnable']] == [base(4 * t, 0)]
    _check(st, records, 2 * t, 0, 35.0, 35.4)  # +0.4: the second seed
    plan = st.plan(records)
    assert plan['length'] is None
    assert [seg.run_name(s) for s in plan['runnable']] == [
        base(2 * t, 1), base(4 * t, 1)]
    _check(st, records, 2 * t, 1, 34.0, 34.8)  # mean +0.6: double again
    plan = st.plan(records)
    assert plan['checks'][-1] == (2 * t, [(0, 35.0, 35.4), (1, 34.0, 34.8)])
    assert 'mean +0.60' in seg.length_check(*plan['checks'][-1])
    # the longest length is taken at once: its arms run beside its check
    assert plan['length'] == 4 * t and plan['flat'] is None
    assert [seg.run_name(s) for s in plan['runnable']] == [
        base(8 * t, 0), base(8 * t, 1)] + [
            a for a in _arms(st, 4 * t) if a not in records]
    # the second seed's check alone is not quoted as the first seed's
    sp = seg.make_spec('quick', 'baseline', 'plain', 8 * t, 1)
    records[seg.run_name(sp)] = _seg_record(st, sp, 35.0)
    plan = st.plan(records)
    assert plan['flat'] is None and plan['checks'][-1][0] == 2 * t
    sp = seg.make_spec('quick', 'baseline', 'plain', 8 * t, 0)
    records[seg.run_name(sp)] = _seg_record(st, sp, 36.4)
    plan = st.plan(records)  # +1.0 and +0.2: mean +0.6, still rising
    assert plan['checks'][-1] == (4 * t, [(0, 35.4, 36.4), (1, 34.8, 35.0)])
    assert plan['length'] == 4 * t and plan['flat'] is False
    records[seg.run_name(sp)] = _seg_record(st, sp, 35.8)
    assert st.plan(records)['flat'] is True  # +0.4 and +0.2: flat


def test_a_recorded_second_seed_is_heard_before_the_first_doubles(
        quick_study):
    st = quick_study
    st.reg = dict(st.reg, check_seeds=2, max_doublings=2)
    t = st.reg['iters']
    records = {}
    _check(st, records, t, 0, 30.0, 30.6)  # +0.6 alone: double
    plan = st.plan(records)
    assert plan['length'] is None and [seg.run_name(s) for s in
                                       plan['runnable']] == [
        seg.run_name(seg.make_spec('quick', 'baseline', 'plain', 4 * t, 0))]
    _check(st, records, t, 1, 30.0, 29.6)  # +0.6 and -0.4: mean +0.1
    plan = st.plan(records)
    assert plan['length'] == t and plan['flat'] is True
    assert plan['checks'] == [(t, [(0, 30.0, 30.6), (1, 30.0, 29.6)])]


def test_hash_follows_the_backbone_run_and_the_recipe(quick_study,
                                                      tmp_path):
    st = quick_study
    sp = seg.make_spec('quick', 'cosub', 'plain', 10, 0)
    h = st.config_hash(sp)
    assert st.config_hash(dict(sp, seed=1)) == h  # seed left out
    assert st.config_hash(dict(sp, finetune='cosub')) != h
    assert st.config_hash(dict(sp, iters=20)) != h
    # a different classification recipe (another chosen lr) changes it
    st.cls_plan.best = rep.REGIMES['quick']['grid'][1]
    assert st.config_hash(sp) != h


def test_config_text_sets_init_and_cosub_finetuning(tmp_path):
    sp = seg.make_spec('quick', 'cosub', 'cosub', 10, 3)
    path = tmp_path / 'c.py'
    path.write_text(seg.config_text(sp, '/x/iter_20.pth', '/scenes'))
    cfg = Config.fromfile(str(path))
    assert cfg.model.type == 'cosub_mm.CosubEncoderDecoder'
    assert cfg.model.backbone.init_cfg == dict(
        type='Pretrained', checkpoint='/x/iter_20.pth', prefix='backbone.')
    assert cfg.train_dataloader.dataset.data_root == '/scenes'
    assert cfg.randomness.seed == 3
    assert cfg.model.backbone.arch['embed_dims'] == 64
    rand = seg.make_spec('quick', 'random', 'plain', 10, 0)
    path.write_text(seg.config_text(rand, None, '/scenes'))
    cfg = Config.fromfile(str(path))
    assert cfg.model.backbone.init_cfg is None
    assert cfg.model.type == 'cosub_mm.LayerDecayEncoderDecoder'


def test_summary_pairs_arms_by_seed(quick_study, tmp_path):
    st = quick_study
    t = st.reg['iters']
    values = {('cosub', 'plain'): [40.0, 42.0],
              ('baseline', 'plain'): [39.0, 40.5],
              ('random', 'plain'): [30.0, 31.0],
              ('cosub', 'cosub'): [41.0, 41.5]}
    recs = [_seg_record(st, seg.make_spec('quick', 'baseline', 'plain',
                                          2 * t, 0), 39.2)]
    for (init, ft), ms in values.items():
        for seed, m in zip(st.reg['seeds'], ms):
            recs.append(_seg_record(
                st, seg.make_spec('quick', init, ft, t, seed), m))
    stale = dict(recs[1], name='old', config_hash='0' * 16)
    for rec in recs + [stale]:
        study.write_record(st.records_dir, 'seg_quick', rec)
    out = str(tmp_path / 'out' / 'scenes.md')
    summary = seg.summarise([st], out)
    md = open(out).read()
    iv = study.paired_interval(values[('cosub', 'plain')],
                               values[('baseline', 'plain')])
    assert summary['headlines'][0]['cosub_vs_baseline_init'] == iv
    assert study.interval_text(iv) in md
    ft = study.paired_interval(values[('cosub', 'cosub')],
                               values[('cosub', 'plain')])
    assert summary['headlines'][0]['cosub_ft_vs_plain_ft'] == ft
    # the demo quotes the length check from the summary
    assert summary['headlines'][0]['length_checks'] == [[t, [[0, 39.0,
                                                              39.2]]]]
    assert summary['headlines'][0]['flat'] is True
    assert f"| cosub-init | 2 | {study.mean_std([40.0, 42.0])} |" in md
    assert 'seg_quick/old' in md
    assert 'still gains' not in md and 'not finished' not in md
    assert osp.isfile(str(tmp_path / 'out' / 'scenes.png'))
    with open(str(tmp_path / 'out' / 'scenes_summary.json')) as f:
        assert json.load(f)['runs'] == len(recs)


def test_comparisons_wait_for_the_decided_length_to_have_its_seeds(
        quick_study, tmp_path):
    st = quick_study
    t, records = _checked(st, 1, 30.0, 35.0)  # rising: the length is 2t
    _fill_arms(st, records, t, lambda k, seed: 40.0 + k + seed)
    sp = seg.make_spec('quick', 'cosub', 'plain', 2 * t, 0)
    records[seg.run_name(sp)] = _seg_record(st, sp, 50.0)
    for rec in records.values():
        study.write_record(st.records_dir, 'seg_quick', rec)
    out = str(tmp_path / 'scenes.md')
    head = seg.summarise([st], out)['headlines'][0]
    assert st.plan(records)['length'] == 2 * t
    # the complete comparison at t stays the headline
    assert head['iters'] == t and head['flat'] is False
    assert head['pending'] == dict(iters=2 * t, runs=2, flat=None)
    # baseline-init of seed 0 at t is the check's run
    assert head['cosub_vs_baseline_init'] == study.paired_interval(
        [40.0, 41.0], [30.0, 42.0])
    md = open(out).read()
    assert (f'**In progress:** the decided length, {2 * t} iterations '
            f'(2 of {2 * len(seg.ARMS)} runs recorded)') in md
    assert '| cosub-init | 1 | 50.00 ± - | 50.00, - |' in md
    assert (f'- Finetuning still gains at {t} iterations: doubling it gained '
            '+5.00 mIoU (seeds 0), not the < 0.5') in md
    assert (f'{2 * t} iterations is the longest length allowed; its check '
            f'against {4 * t} is not finished') in md
    for (init, ft) in seg.ARMS:
        for seed in st.reg['seeds']:
            sp = seg.make_spec('quick', init, ft, 2 * t, seed)
            study.write_record(st.records_dir, 'seg_quick',
                               _seg_record(st, sp, 45.0 + seed))
    head = seg.summarise([st], out)['headlines'][0]
    assert head['iters'] == 2 * t and 'pending' not in head
    assert 'In progress' not in open(out).read()


def test_a_partial_decided_length_without_a_complete_one(quick_study,
                                                         tmp_path):
    st = quick_study
    t, records = _checked(st, 0, 30.0, 31.0)
    for seed, m in ((0, 40.0), (1, 41.0)):
        sp = seg.make_spec('quick', 'cosub', 'plain', t, seed)
        records[seg.run_name(sp)] = _seg_record(st, sp, m)
    for rec in records.values():
        study.write_record(st.records_dir, 'seg_quick', rec)
    out = str(tmp_path / 'scenes.md')
    assert seg.summarise([st], out)['headlines'] == []
    md = open(out).read()
    assert (f'**In progress:** the decided length, {t} iterations (3 of '
            f'{2 * len(seg.ARMS)} runs recorded); its comparisons are made '
            'once their arms have 2 paired seeds here. So far:') in md
    # one pair: its number, without a verdict
    assert '- cosub-init − baseline-init (paired by seed, mean [95 % CI]): ' \
        '+10.00 (1 pair, no interval) mIoU.' in md
    assert 'no conclusion yet' not in md.split('**In progress')[1]


def test_a_comparison_moves_to_the_decided_length_on_its_own(quick_study,
                                                            tmp_path):
    """Arms complete at 2t are compared there; cosub-ft stays at t."""
    st = quick_study
    t, records = _checked(st, 1, 30.0, 35.0)  # rising: the length is 2t
    _fill_arms(st, records, t, lambda k, seed: 40.0 + k + seed)
    at_2t = {('cosub', 'plain'): [50.0, 52.5], ('baseline', 'plain'):
             [35.0, 51.0], ('random', 'plain'): [44.0, 45.0],
             ('cosub', 'cosub'): [49.0, None]}
    for arm, ms in at_2t.items():
        for seed, m in zip(st.reg['seeds'], ms):
            if m is not None:
                sp = seg.make_spec('quick', *arm, 2 * t, seed)
                records[seg.run_name(sp)] = _seg_record(st, sp, m)
    for rec in records.values():
        study.write_record(st.records_dir, 'seg_quick', rec)
    out = str(tmp_path / 'scenes.md')
    head = seg.summarise([st], out)['headlines'][0]
    assert head['lengths'] == dict(
        cosub_vs_baseline_init=2 * t, cosub_init_vs_random=2 * t,
        baseline_init_vs_random=2 * t, cosub_ft_vs_plain_ft=t)
    assert head['iters'] == 2 * t and head['flat'] is None
    assert head['pending'] == dict(iters=2 * t, runs=7, flat=None)
    assert head['cosub_vs_baseline_init'] == study.paired_interval(
        [50.0, 52.5], [35.0, 51.0])
    # cosub-ft is compared with cosub-init of the same length, t
    assert head['cosub_ft_vs_plain_ft'] == study.paired_interval(
        [43.0, 44.0], [40.0, 41.0])
    md = open(out).read()
    assert (f'Validation mIoU after {t} iterations (mean ± std over seeds, '
            'ddof 1); compared here: cosub-init + cosub-ft − cosub-init:'
            ) in md
    # its one pair at 2t is shown, without a verdict
    assert ('- cosub-init + cosub-ft − cosub-init (paired by seed, mean '
            '[95 % CI]): -1.00 (1 pair, no interval) mIoU; compared at '
            f'{t} iterations until it has 2 seed pairs here.') in md
    assert 'In progress' not in md
    # each length gets its own caveat, naming the comparisons made there
    assert (f'- The finetuning length check at {2 * t} iterations is not '
            'finished: cosub-init − baseline-init, cosub-init − random-init, '
            'baseline-init − random-init may be made before') in md
    assert (f'- Finetuning still gains at {t} iterations: doubling it gained '
            '+5.00 mIoU (seeds 0), not the < 0.5 the length check asks for, '
            'so cosub-init + cosub-ft − cosub-init is made before') in md
    assert (f'cosub during finetuning vs plain finetuning (quick backbones, '
            f'{t} iterations)') in md
    assert (f'- baseline-pretrained vs random init (quick backbones, {2 * t} '
            'iterations): -1.50 [-96.80, +93.80] mIoU over 2 seed pairs: no '
            'significant difference') in md


def test_arms_beyond_the_decided_length_are_shown_without_verdict(
        quick_study, tmp_path):
    st = quick_study
    t, records = _checked(st, 0, 30.0, 30.2)  # the check's run at 2t
    _fill_arms(st, records, t, lambda k, seed: 40.0 + k + seed)
    for rec in records.values():
        study.write_record(st.records_dir, 'seg_quick', rec)
    out = str(tmp_path / 'scenes.md')
    head = seg.summarise([st], out)['headlines'][0]
    # the check's lone run pairs with nothing: no table of its own
    assert 'Beyond the decided length' not in open(out).read()
    sp = seg.make_spec('quick', 'cosub', 'plain', 2 * t, 0)
    study.write_record(st.records_dir, 'seg_quick',
                       _seg_record(st, sp, 31.0))
    again = seg.summarise([st], out)['headlines'][0]
    # the headline stays at the decided length
    assert again == head and head['iters'] == t
    md = open(out).read()
    beyond = md.split(f'Beyond the decided length, {2 * t} iterations')[1]
    assert '| cosub-init | 1 | 31.00 ± - | 31.00, - |' in beyond
    assert '| baseline-init | 1 | 30.20 ± - | 30.20, - |' in beyond
    assert ('- cosub-init − baseline-init (paired by seed, mean [95 % CI]): '
            '+0.80 (1 pair, no interval) mIoU.') in beyond
    assert 'cosub-init − random-init' not in beyond
    assert 'wins' not in beyond.split('All runs')[0]


def test_missing_classification_headline_is_a_clear_error(tmp_path):
    st = seg.Study('quick', str(tmp_path / 's'), str(tmp_path / 'r'),
                   str(tmp_path / 'c'), str(tmp_path / 'cr'))
    with pytest.raises(SystemExit, match='replicate_fashion_mnist'):
        st.cls_spec('cosub', 0)


def test_execute_finetunes_through_train_py_and_records(quick_study):
    """One real run (random init, 2 iterations, the quick scene set)."""
    st = quick_study
    spec = seg.make_spec('quick', 'random', 'plain', 2, 0)
    rec = st.execute(spec)
    path = osp.join(st.records_dir, 'seg_quick', seg.run_name(spec) + '.json')
    with open(path) as f:
        assert json.load(f) == json.loads(json.dumps(rec))
    assert rec['config_hash'] == st.config_hash(spec)
    assert 0.0 <= rec['mIoU'] <= 100.0 and rec['curve'][-1][0] == 2
    valid, stale = st.records()
    assert list(valid) == [rec['name']] and not stale


def test_arms_of_a_seed_retrain_its_missing_classifier_once(
        quick_study, monkeypatch):
    """Two jobs asking for the same missing classifier: one retrains it,
    the other waits and takes its checkpoint."""
    import os
    import threading
    import time
    st = quick_study
    calls = []

    def execute(cspec, work_dir, records_dir, jobs, echo):
        calls.append(cspec)
        time.sleep(0.3)  # long enough for the other job to ask meanwhile
        run_dir = osp.join(work_dir, cspec['regime'], rep.run_name(cspec))
        os.makedirs(run_dir, exist_ok=True)
        with open(osp.join(run_dir, 'last_checkpoint'), 'w') as f:
            f.write(osp.join(run_dir, 'iter_2.pth'))
        rec = dict(name=rep.run_name(cspec), spec=cspec, test_top1=71.5,
                   config_hash=rep.config_hash(cspec, work_dir))
        study.write_record(records_dir, cspec['regime'], rec)
        return rec

    monkeypatch.setattr(rep, 'execute', execute)
    specs = [seg.make_spec('quick', 'cosub', f, 2, 0)
             for f in ('plain', 'cosub')]
    out = [None, None]
    threads = [threading.Thread(
        target=lambda i=i: out.__setitem__(i, st.checkpoint(specs[i])))
        for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and calls[0] == st.cls_spec('cosub', 0)
    assert out[0] == out[1] and out[0][0].endswith('iter_2.pth')
    assert out[0][1]['backbone_retrained_test_top1'] == 71.5
    # a later ask finds the retrained run without training again
    assert st.checkpoint(specs[0]) == out[0] and len(calls) == 1


def test_a_run_in_pieces_is_the_run_trained_in_one_go(quick_study, tmp_path):
    """Stopped at its time limit twice (after iterations 1 and 3, across
    the validation at 2) and continued, a run ends with the weights and
    curve of the run trained in one go as the recorded runs were: without
    the resume points and without ExactResumeHook."""
    import torch

    from cosub_mm.runs import metric_history, read_scalars, train_config
    st = quick_study
    spec = seg.make_spec('quick', 'random', 'plain', 12, 0)
    assert st.execute(spec, hours=0) is None
    assert st.execute(spec, hours=0) is None
    assert not st.records()[0]
    rec = st.execute(spec)
    assert [(p['from_step'], p['to_step']) for p in rec['pieces']] == [
        (0, 1), (1, 3), (3, 12)]
    assert rec['wall_s'] == pytest.approx(
        sum(p['wall_s'] for p in rec['pieces']), abs=0.2)
    run_dir = osp.join(st.work_dir, spec['regime'], seg.run_name(spec))
    ref = str(tmp_path / 'one_go')
    cfg = str(tmp_path / 'one_go.py')  # the run dir's holds mmengine's dump
    with open(cfg, 'w') as f:
        f.write(seg.config_text(spec, None, st.scenes_root))
    train_config(cfg, ref, ['--length', '12'], threads=1)
    ref_scalars = read_scalars(ref)
    assert rec['curve'] == metric_history(ref_scalars, 'mIoU')
    assert [c[0] for c in rec['curve']] == [2, 4, 6, 8, 10, 12]
    pieces = torch.load(osp.join(run_dir, 'iter_12.pth'),
                        weights_only=False)['state_dict']
    one_go = torch.load(osp.join(ref, 'iter_12.pth'),
                        weights_only=False)['state_dict']
    assert pieces.keys() == one_go.keys()
    assert all(torch.equal(pieces[k], one_go[k]) for k in one_go)


def test_a_doubling_pair_from_different_backbones_is_named(quick_study,
                                                           tmp_path):
    """Two retrains of a classifier on different machines differ: the
    length check says which of its gains mix in that change."""
    st = quick_study
    st.reg = dict(st.reg, max_doublings=1)
    t = st.reg['iters']
    records = {}
    _check(st, records, t, 0, 30.0, 30.2)
    short, long_ = (records[seg.run_name(seg.make_spec(
        'quick', 'baseline', 'plain', n, 0))] for n in (t, 2 * t))
    short.update(backbone_test_top1=70.0, backbone_retrained_test_top1=70.0)
    long_.update(backbone_test_top1=70.0, backbone_retrained_test_top1=71.5)
    plan = st.plan(records)
    note = seg.backbone_changes(st, records, plan['checks'])
    assert f'changed within {t} → {2 * t}, seed 0 (70.00 → 71.50)' in note
    long_.pop('backbone_retrained_test_top1')  # the recorded classifier
    assert seg.backbone_top1(long_) == 70.0
    assert seg.backbone_changes(st, records, plan['checks']) == ''


def test_the_hours_of_a_piece_include_retraining_its_classifier(
        quick_study, monkeypatch):
    """A classifier retrained before the finetuning uses the piece's hours:
    the finetuning gets what is left."""
    st = quick_study
    clock = [1000.0]
    got = []
    monkeypatch.setattr(seg.time, 'time', lambda: clock[0])
    monkeypatch.setattr(st, 'make_scenes', lambda: None)

    def checkpoint(spec):
        clock[0] += 1800  # half an hour of retraining
        return '/c/iter_2.pth', {}

    monkeypatch.setattr(st, 'checkpoint', checkpoint)
    monkeypatch.setattr(seg, 'train_in_pieces',
                        lambda *a, hours=None, **k: got.append(hours))
    spec = seg.make_spec('quick', 'cosub', 'plain', 2, 0)
    assert st.execute(spec, hours=2.0) is None
    assert got == [1.5]
    assert st.execute(spec) is None and got[-1] is None
