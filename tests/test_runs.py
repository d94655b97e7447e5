"""cosub_mm.runs.train_in_pieces: which launch continues a run, and how the
pieces' logs are joined (tools/train.py faked; the real pieces are in
tests/test_tools/test_compare_seg_init.py)."""
import json
import os
import os.path as osp

import pytest

from cosub_mm import runs


@pytest.fixture
def fake_train(monkeypatch):
    """A train.py that logs a loss per step and stops 2 steps after where
    it starts under a time limit; it records the flags of each launch."""
    calls = []

    def train_config(config, work_dir, args, threads=None, log_file=None):
        args = list(args)
        calls.append(args)
        start = 0
        if '--resume' in args:
            start = runs.checkpoint_step(args[args.index('--resume') + 1])
        end = 6 if '--time-limit' not in args else min(6, start + 2)
        stamp = osp.join(work_dir, f'20261208_00000{len(calls)}',
                         'vis_data')
        os.makedirs(stamp)
        with open(osp.join(stamp, 'scalars.json'), 'w') as f:
            # a killed launch may have logged past its last checkpoint
            for step in range(start + 1, end + 2 if end < 6 else 7):
                f.write(json.dumps(dict(step=step, loss=float(step),
                                        launch=len(calls))) + '\n')
        ckpt = osp.join(work_dir, f'iter_{end}.pth')
        open(ckpt, 'w').close()
        with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
            f.write(ckpt)
        open(log_file, 'w').close()
        return 1.5

    monkeypatch.setattr(runs, 'train_config', train_config)
    return calls


def test_pieces_resume_their_checkpoint_and_join_their_logs(tmp_path,
                                                            fake_train):
    work_dir = str(tmp_path / 'run')
    every = ['--cfg-options', 'default_hooks.checkpoint.interval=2']
    assert runs.train_in_pieces('c.py', work_dir, 6, 'k1', ['--x'],
                                hours=0.5, resume_points=3) is None
    assert fake_train[-1] == ['--x'] + every + ['--time-limit', '0.5']
    assert runs.train_in_pieces('c.py', work_dir, 6, 'k1', ['--x'],
                                hours=0, resume_points=3) is None
    assert fake_train[-1] == ['--x'] + every + [
        '--resume', osp.join(work_dir, 'iter_2.pth'), '--time-limit', '0.0']
    out = runs.train_in_pieces('c.py', work_dir, 6, 'k1', ['--x'],
                               resume_points=None)  # the config's interval
    assert fake_train[-1] == ['--x', '--resume',
                              osp.join(work_dir, 'iter_4.pth')]
    # each step once, from the launch that continued it
    assert [(r['step'], r['launch']) for r in out['scalars']] == [
        (1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (6, 3)]
    assert [(p['from_step'], p['to_step']) for p in out['pieces']] == [
        (0, 2), (2, 4), (4, 6)]
    assert out['wall_s'] == 4.5
    assert sorted(f for f in os.listdir(work_dir) if f.startswith(
        'train')) == ['train.1.log', 'train.2.log', 'train.log']


def test_a_killed_piece_or_another_key_starts_afresh(tmp_path, fake_train):
    work_dir = str(tmp_path / 'run')
    runs.train_in_pieces('c.py', work_dir, 6, 'k1', hours=0)
    runs.train_in_pieces('c.py', work_dir, 6, 'k2', hours=0)
    assert '--resume' not in fake_train[-1]  # another run
    state = osp.join(work_dir, runs.PIECES)
    with open(state) as f:
        pieces = json.load(f)
    assert pieces['key'] == 'k2' and len(pieces['pieces']) == 1
    pieces['pieces'][-1].pop('wall_s')  # as a killed launch leaves it
    with open(state, 'w') as f:
        json.dump(pieces, f)
    out = runs.train_in_pieces('c.py', work_dir, 6, 'k2')
    assert '--resume' not in fake_train[-1]
    assert [(p['from_step'], p['to_step']) for p in out['pieces']] == [
        (0, 6)]
    assert [r['launch'] for r in out['scalars']] == [3] * 6


def test_checkpoint_step_names_a_bad_file():
    assert runs.checkpoint_step('/w/epoch_12.pth') == 12
    with pytest.raises(ValueError, match='latest.pth: not an iter_N.pth'):
        runs.checkpoint_step('/w/latest.pth')


def test_an_epoch_based_run_is_refused_naming_its_checkpoint(tmp_path,
                                                             monkeypatch):
    work_dir = str(tmp_path / 'run')

    def train_config(config, work_dir, args, threads=None, log_file=None):
        os.makedirs(osp.join(work_dir, '20261208_000001'))
        with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
            f.write(osp.join(work_dir, 'epoch_3.pth'))
        return 1.0

    monkeypatch.setattr(runs, 'train_config', train_config)
    with pytest.raises(ValueError, match=r'c.py saved .*epoch_3.pth; only '
                       'iteration-based'):
        runs.train_in_pieces('c.py', work_dir, 3, 'k')
