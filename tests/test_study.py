"""cosub_mm.study: records, stale detection, statistics and the run pool."""
import json
import multiprocessing
import os.path as osp

import pytest
from scipy import stats

from cosub_mm import study


def test_interval_and_verdict_follow_scipy():
    a, b = [80.1, 80.9, 81.4, 80.2], [79.0, 80.5, 80.3, 79.9]
    iv = study.paired_interval(a, b)
    ref = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert (iv['low'], iv['high']) == pytest.approx((ref.low, ref.high))
    assert study.verdict(iv) == 'cosub wins (the interval excludes 0)'
    assert study.verdict(study.paired_interval(b, a)).startswith(
        'cosub loses')
    mixed = study.paired_interval([1.0, -1.0, 0.5], [0.0, 0.0, 0.0])
    assert study.verdict(mixed).startswith('no significant difference')
    assert study.interval_text(mixed) == (
        f"{mixed['mean']:+.2f} [{mixed['low']:+.2f}, {mixed['high']:+.2f}]")


def test_record_round_trip_and_stale_split(tmp_path):
    rec = dict(name='a_s0', spec=dict(seed=0, lr=1.0), config_hash='h1')
    old = dict(name='a_s1', spec=dict(seed=1, lr=2.0), config_hash='h1')
    path = study.write_record(str(tmp_path), 'reg', rec)
    study.write_record(str(tmp_path), 'reg', old)
    assert path == osp.join(str(tmp_path), 'reg', 'a_s0.json')
    assert json.load(open(path)) == rec
    loaded = study.load_records(str(tmp_path), 'reg')
    valid, stale = study.split_stale(
        loaded, lambda spec: 'h1' if spec['lr'] == 1.0 else 'h2')
    assert list(valid) == ['a_s0'] and valid['a_s0'] == rec
    assert stale == ['a_s1']
    assert not list(tmp_path.rglob('*.tmp'))


def test_resolved_hash_ignores_the_seed_not_the_recipe(tmp_path):
    text = "a = 1\nrandomness = dict(seed={})\nwork_dir = '{}'\n"
    h = [study.resolved_hash(text.format(s, w), str(tmp_path / f'{s}.py'))
         for s, w in ((0, 'x'), (1, 'y'))]
    assert h[0] == h[1]
    other = study.resolved_hash('a = 2\n', str(tmp_path / 'o.py'))
    assert other != study.resolved_hash('a = 1\n', str(tmp_path / 'p.py'))

    def double(cfg):
        cfg.a = 2
    assert study.resolved_hash('a = 1\n', str(tmp_path / 'q.py'),
                               adjust=double) == other


def _hash_repeatedly(args):
    text, path, times = args
    return {study.resolved_hash(text, path) for _ in range(times)}


def test_resolved_hash_is_safe_across_processes(tmp_path):
    """Two study drivers hash different runs through one shared file."""
    path = str(tmp_path / 'shared.py')
    texts = [f'a = {i}\nb = [{i}] * 50\n' for i in range(2)]
    refs = [study.resolved_hash(t, str(tmp_path / f'{i}.py'))
            for i, t in enumerate(texts)]
    with multiprocessing.get_context('fork').Pool(2) as pool:
        got = pool.map(_hash_repeatedly, [(t, path, 30) for t in texts])
    assert got == [{r} for r in refs]


def test_run_pool_schedules_a_stage_once_its_inputs_are_done():
    done = []

    def todo():
        # 'b' depends on 'a'; 'c' is independent
        left = [n for n in ('a', 'c') if n not in done]
        if 'a' in done and 'b' not in done:
            left.insert(0, 'b')
        return [(n, n) for n in left]

    started = study.run_pool(todo, done.append, jobs=2, max_hours=1.0,
                             log=lambda m: None)
    assert started == 3 and sorted(done) == ['a', 'b', 'c']
    assert done.index('b') > done.index('a')


def test_run_pool_respects_max_runs_and_reraises():
    ran = []
    study.run_pool(lambda: [(n, n) for n in 'xyz' if n not in ran],
                   ran.append, jobs=1, max_hours=1.0, max_runs=2,
                   log=lambda m: None)
    assert ran == ['x', 'y']

    def boom(spec):
        raise RuntimeError(f'run {spec} failed')
    with pytest.raises(RuntimeError, match='run x failed'):
        study.run_pool(lambda: [('x', 'x')], boom, jobs=1, max_hours=1.0,
                       log=lambda m: None)


def test_mean_std_gives_one_value_no_spread():
    assert study.mean_std([40.0, 42.0]) == '41.00 ± 1.41'
    assert study.mean_std([42.46]) == '42.46 ± -'
