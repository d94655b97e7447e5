"""Exact resume after SIGKILL, atomic checkpoints, and resume faults.

Each resume test kills a real ``tools/train.py`` subprocess with SIGKILL,
resumes it with ``--resume`` (weights-only) and compares the final weights
with those of an uninterrupted run of the same length (6 iterations,
checkpoints every 2). The checkpoints it resumes from load with plain
``torch.load`` in a process without cosub_mm or mmengine. The fault tests
resume the killed run wrongly (a damaged pointer, another config's model, a
file that needs full unpickling) and check the error and that nothing in the
work_dir was overwritten.
"""
import json
import os
import os.path as osp
import shutil

import pytest
import torch

from reliability_helpers import (COSUB_CFG, assert_bitwise_equal,
                                 assert_untouched, fault_env, load_anywhere,
                                 run_tool, snapshot, train, train_and_kill,
                                 train_args, weights)
from conftest import make_cls_dataset

WIDE_CFG = COSUB_CFG.replace('.py', '_wide.py')
EPOCH_CFG = COSUB_CFG.replace('.py', '_epochs.py')
SEEDED_CFG = COSUB_CFG.replace('.py', '_seeded.py')  # per-sample seeds
WORKERS = ['train_dataloader.num_workers=2']


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> str:
    """12 training images: 3 iterations per epoch at batch 4."""
    return make_cls_dataset(
        str(tmp_path_factory.mktemp('resume_data')), per_class=4)


@pytest.fixture(scope='module')
def reference_run(tmp_path_factory, data_root) -> str:
    """The work_dir of an uninterrupted run of 6 iterations."""
    work_dir = str(tmp_path_factory.mktemp('reference'))
    train(work_dir, data_root)
    return work_dir


@pytest.fixture(scope='module')
def reference(reference_run) -> dict:
    """Final weights of the uninterrupted run."""
    return weights(osp.join(reference_run, 'iter_6.pth'))


def _logged_losses(path: str) -> dict:
    """The message hub's loss histories of a checkpoint, as mmengine's
    loader rebuilds them (timings left out: they differ run to run)."""
    from mmengine.runner.checkpoint import CheckpointLoader
    scalars = CheckpointLoader.load_checkpoint(path)['message_hub'][
        'log_scalars']
    return {k: v._log_history.tolist() for k, v in scalars.items()
            if k.startswith('train/') and 'time' not in k}


@pytest.fixture(scope='module')
def killed_after_iter5(tmp_path_factory, data_root) -> str:
    """A work_dir whose run was SIGKILLed after iteration 5 (last
    checkpoint: iteration 4)."""
    work_dir = str(tmp_path_factory.mktemp('killed'))
    marker = osp.join(work_dir, 'paused')
    status = train_and_kill(
        work_dir, data_root, marker, FAULT_PAUSE_AFTER_ITER='5')
    assert status == -9
    assert not osp.exists(osp.join(work_dir, 'iter_6.pth'))
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read() == osp.join(work_dir, 'iter_4.pth')
    return work_dir


def _copy_run(work_dir: str, to: str) -> str:
    shutil.copytree(work_dir, to)
    # the pointer names the original folder; resume from the copied file
    with open(osp.join(to, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(to, 'iter_4.pth'))
    return to


def test_resume_after_sigkill_is_bitwise_exact(killed_after_iter5, data_root,
                                               reference, reference_run,
                                               tmp_path):
    work_dir = _copy_run(killed_after_iter5, str(tmp_path / 'run'))
    # the file resumed from loads with plain torch.load anywhere
    state, summary = load_anywhere(osp.join(work_dir, 'iter_4.pth'),
                                   str(tmp_path / 'state.pth'))
    assert summary['modules'] == []
    assert {'meta', 'state_dict', 'message_hub', 'optimizer',
            'param_schedulers'} <= set(summary['keys'])
    assert summary['rng_state'] == ['numpy', 'python', 'torch']
    assert 'train/loss' in summary['hub']
    assert_bitwise_equal(state, weights(osp.join(work_dir, 'iter_4.pth')))
    counts = str(tmp_path / 'loads.json')
    proc = train(work_dir, data_root, resume=True, FAULT_COUNT_LOADS=counts)
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 0, iter: 4' in log
    assert 'ExactResumeHook: 4 batches skipped at the sampler' in log
    # zero replay: the 4 trained batches (one epoch end crossed) were
    # skipped as indices; the first new iteration loaded its own batch only
    with open(counts) as f:
        assert json.load(f) == dict(iter=5, loads=4)
    assert_bitwise_equal(weights(osp.join(work_dir, 'iter_6.pth')),
                         reference)
    # the message hub was restored: 4 saved + 2 new losses, all equal
    losses = _logged_losses(osp.join(work_dir, 'iter_6.pth'))
    assert len(losses['train/loss']) == 6
    assert losses == _logged_losses(osp.join(reference_run, 'iter_6.pth'))


def test_sigkill_in_the_first_iteration_after_a_resume_then_resume_again(
        killed_after_iter5, data_root, reference, tmp_path):
    """Killed again right after the resumed run's first new iteration (no
    checkpoint written since): resuming once more from the same file ends
    bit-identical, so a failed resume costs nothing but its time."""
    work_dir = _copy_run(killed_after_iter5, str(tmp_path / 'run'))
    before = snapshot(work_dir)
    marker = osp.join(work_dir, 'paused_again')
    status = train_and_kill(work_dir, data_root, marker,
                            extra=['resume=True'], FAULT_PAUSE_AFTER_ITER='5')
    assert status == -9
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read() == osp.join(work_dir, 'iter_4.pth')
    after = snapshot(work_dir)
    kept = [n for n in before if n.endswith('.pth') or n == 'last_checkpoint']
    assert kept and all(after[n] == before[n] for n in kept)
    assert sorted(n for n in after if n.endswith('.pth')) == sorted(
        n for n in before if n.endswith('.pth'))  # nothing new written
    train(work_dir, data_root, resume=True)
    assert_bitwise_equal(weights(osp.join(work_dir, 'iter_6.pth')),
                         reference)


def test_mmengine_resume_alone_is_not_exact(killed_after_iter5, data_root,
                                            reference, tmp_path):
    """Without ExactResumeHook the RNGs restart from the seed: the drop-path
    masks and Mixup/CutMix draws after the resume differ."""
    work_dir = _copy_run(killed_after_iter5, str(tmp_path / 'run'))
    args = train_args(work_dir, data_root)
    args[1] = COSUB_CFG.replace('.py', '_plain_resume.py')
    args.insert(2, '--resume')
    run_tool(args, env=fault_env())
    resumed = weights(osp.join(work_dir, 'iter_6.pth'))
    assert resumed.keys() == reference.keys()
    diff = max((resumed[k] - reference[k]).abs().max() for k in reference)
    assert diff > 1e-5


def test_checkpoint_killed_mid_save_leaves_previous_one_resumable(
        data_root, reference, tmp_path):
    """SIGKILL while iteration 4's checkpoint is half written (a slow
    writer): iter_4.pth never appears, last_checkpoint still names
    iter_2.pth, and resuming from it reproduces the uninterrupted run."""
    work_dir = str(tmp_path)
    marker = osp.join(work_dir, 'half_written')
    status = train_and_kill(
        work_dir, data_root, marker, FAULT_SLOW_SAVE_ITER='4')
    assert status == -9
    files = os.listdir(work_dir)
    assert 'iter_4.pth' not in files
    partial = [f for f in files if f.startswith('.iter_4.pth.')]
    assert len(partial) == 1  # the half-written temporary file
    assert 0 < os.path.getsize(osp.join(work_dir, partial[0])) < \
        os.path.getsize(osp.join(work_dir, 'iter_2.pth'))
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read() == osp.join(work_dir, 'iter_2.pth')

    train(work_dir, data_root, resume=True)
    files = os.listdir(work_dir)
    assert not [f for f in files if f.endswith('.tmp')]  # cleaned up
    assert_bitwise_equal(weights(osp.join(work_dir, 'iter_6.pth')),
                         reference)


class _Payload:
    """Unpickling this creates a file: stands for any code execution."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


def test_resume_unsafe_opt_in_resumes_a_file_that_needs_full_unpickling(
        killed_after_iter5, data_root, reference, tmp_path):
    """A complete checkpoint plus an object weights-only loading refuses
    (stand-in for a checkpoint written by another tool). --resume refuses it
    (tests/test_reliability/test_safe_checkpoint_loading.py); with
    --resume-unsafe it is fully unpickled, as before issue 17: the payload
    runs, and the run continues exactly."""
    work_dir = _copy_run(killed_after_iter5, str(tmp_path / 'run'))
    marker = str(tmp_path / 'code_ran')
    foreign = osp.join(work_dir, 'foreign.pth')
    checkpoint = torch.load(osp.join(work_dir, 'iter_4.pth'))
    checkpoint['meta']['written_by'] = _Payload(marker)
    torch.save(checkpoint, foreign)
    proc = run_tool(train_args(work_dir, data_root) +
                    ['--resume', foreign, '--resume-unsafe'],
                    env=fault_env())
    assert 'resume_unsafe: fully unpickling ' + foreign in \
        proc.stdout + proc.stderr
    assert osp.exists(marker)
    assert_bitwise_equal(weights(osp.join(work_dir, 'iter_6.pth')),
                         reference)


def test_damaged_pointer_stops_resume_naming_it(killed_after_iter5, data_root,
                                                tmp_path):
    """A truncated last_checkpoint with --resume (auto): a clear error
    naming the pointer and the newest checkpoint to pass instead, nothing
    loaded, nothing overwritten."""
    work_dir = _copy_run(killed_after_iter5, str(tmp_path / 'run'))
    pointer = osp.join(work_dir, 'last_checkpoint')
    with open(pointer, 'w') as f:
        f.write(osp.join(work_dir, 'iter_'))  # torn mid-write
    before = snapshot(work_dir)
    proc = train(work_dir, data_root, resume=True, check=False)
    assert proc.returncode != 0
    newest = osp.join(work_dir, 'iter_4.pth')
    assert (f'FileNotFoundError: Cannot resume: the checkpoint pointer '
            f'{pointer} is damaged') in proc.stderr
    assert f'--resume {newest}' in proc.stderr
    assert 'resumed epoch' not in proc.stdout
    assert_untouched(before, work_dir)


def test_checkpoint_of_another_config_is_refused_nothing_overwritten(
        killed_after_iter5, data_root, tmp_path):
    """--resume of a width-32 checkpoint into the width-48 config: mmengine
    only warned and trained on; now the error names the file and the keys,
    and the work_dir's checkpoints stay as they were."""
    work_dir = _copy_run(killed_after_iter5, str(tmp_path / 'run'))
    path = osp.join(work_dir, 'iter_4.pth')
    before = snapshot(work_dir)
    proc = run_tool(train_args(work_dir, data_root, ['--resume', path],
                               config=WIDE_CFG), env=fault_env(), check=False)
    assert proc.returncode != 0
    err = proc.stderr
    assert f'ValueError: Cannot resume from {path}: its weights do not ' \
        'match the model CosubClassifier' in err
    assert 'backbone.cls_token (1, 1, 32) in the file vs (1, 1, 48) in ' \
        'the model' in err
    assert 'backbone.layers.0.attn.qkv.weight (96, 32) in the file vs ' \
        '(144, 48) in the model' in err
    assert 'Missing keys: none. Unexpected keys: none.' in err
    assert 'resumed epoch' not in proc.stdout
    assert_untouched(before, work_dir)


def _copy_checkpoint(run_dir: str, name: str, to: str) -> None:
    """A new work_dir ``to`` holding ``run_dir``'s checkpoint ``name`` and
    a pointer to it (what a run killed later would have left)."""
    os.makedirs(to)
    shutil.copyfile(osp.join(run_dir, name), osp.join(to, name))
    with open(osp.join(to, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(to, name))


def _resume_from(run_dir: str, at: int, to: str, data_root: str,
                 **train_kwargs) -> tuple:
    """Resume a copy of ``run_dir``'s iteration-``at`` checkpoint in
    ``to`` (the checkpoint is what a run killed later would have left);
    return the log and ``{'iter', 'loads'}`` of the first new iteration."""
    _copy_checkpoint(run_dir, f'iter_{at}.pth', to)
    counts = osp.join(to, 'loads.json')
    proc = train(to, data_root, resume=True, FAULT_COUNT_LOADS=counts,
                 **train_kwargs)
    with open(counts) as f:
        return proc.stdout + proc.stderr, json.load(f)


def test_resume_at_an_epoch_end_is_exact_with_zero_replay(
        data_root, reference, tmp_path):
    """Checkpoint at iteration 3, the end of the first epoch: the resumed
    run crosses that epoch end with its first new batch, as the
    uninterrupted run did after saving."""
    extra = ['default_hooks.checkpoint.interval=3']
    ref_dir = str(tmp_path / 'every3')
    train(ref_dir, data_root, extra=extra)
    log, loads = _resume_from(ref_dir, 3, str(tmp_path / 'run'), data_root,
                              extra=extra)
    assert 'ExactResumeHook: 3 batches skipped at the sampler' in log
    assert loads == dict(iter=4, loads=4)
    assert_bitwise_equal(weights(str(tmp_path / 'run' / 'iter_6.pth')),
                         reference)


@pytest.mark.parametrize('persistent', [False, True])
def test_resume_with_two_workers_replays_and_is_exact(data_root, tmp_path,
                                                      persistent):
    """Worker processes reseed when their iterator starts and draw as they
    load, so their position cannot be skipped to: the hook lets mmengine
    replay the trained batches, and the run stays exact."""
    extra = ['train_dataloader.num_workers=2',
             f'train_dataloader.persistent_workers={persistent}']
    ref_dir = str(tmp_path / 'reference')
    train(ref_dir, data_root, extra=extra)
    log, _ = _resume_from(ref_dir, 4, str(tmp_path / 'run'), data_root,
                          extra=extra)  # (workers load in their processes)
    assert 'ExactResumeHook: 4 batches replayed' in log
    assert_bitwise_equal(weights(str(tmp_path / 'run' / 'iter_6.pth')),
                         weights(osp.join(ref_dir, 'iter_6.pth')))


def test_upernet_with_infinite_sampler_resumes_exactly_with_zero_replay(
        seg_data_root, tmp_path):
    """The ADE20k configs' kind of run: iteration-based, InfiniteSampler,
    cosub during finetuning, random resize/crop/flip."""
    config = osp.join(osp.dirname(COSUB_CFG), 'cosub_tiny_upernet.py')
    ref_dir = str(tmp_path / 'reference')
    train(ref_dir, seg_data_root, config=config)
    log, loads = _resume_from(ref_dir, 4, str(tmp_path / 'run'),
                              seg_data_root, config=config)
    assert 'ExactResumeHook: 4 batches skipped at the sampler' in log
    assert loads == dict(iter=5, loads=2)  # its own batch of 2
    assert_bitwise_equal(weights(str(tmp_path / 'run' / 'iter_6.pth')),
                         weights(osp.join(ref_dir, 'iter_6.pth')))


@pytest.mark.parametrize('seeded', [False, True],
                         ids=['0-workers', '2-workers-sample-seeds'])
def test_two_gloo_processes_resume_each_rank_exactly(data_root, tmp_path,
                                                     seeded):
    """Ranks seeded differently (diff_rank_seed) draw differently: each
    resumes from its own saved RNG states (a rank given rank 0's would
    drift), with zero replay on each rank's sampler; also with two loader
    workers per rank drawing per-sample seeds."""
    import subprocess
    import sys
    from conftest import REPO, free_port

    def dist_train(work_dir: str, resume: bool = False) -> str:
        env = fault_env()
        env.update(PYTHON=sys.executable, PORT=str(free_port()),
                   OMP_NUM_THREADS='1')
        args = train_args(work_dir, data_root,
                          ['randomness.diff_rank_seed=True'] +
                          (WORKERS if seeded else []),
                          SEEDED_CFG if seeded else COSUB_CFG)
        args[0:1] = ['bash', 'tools/dist_train.sh']
        args.insert(3, '2')
        if resume:
            args.insert(4, '--resume')
        proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=300)
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-4000:]
        return log

    ref_dir = str(tmp_path / 'reference')
    dist_train(ref_dir)
    from cosub_mm.fileio import safe_load
    meta = safe_load(osp.join(ref_dir, 'iter_4.pth'))['meta']
    ranks = meta['rng_state_ranks']
    assert len(ranks) == 2
    assert not torch.equal(ranks[0]['torch'], ranks[1]['torch'])
    # resume from the reference's own iteration-4 checkpoint
    work_dir = str(tmp_path / 'run')
    _copy_checkpoint(ref_dir, 'iter_4.pth', work_dir)
    log = dist_train(work_dir, resume=True)
    assert log.count('ExactResumeHook: 4 batches skipped at the sampler') \
        >= 1
    assert_bitwise_equal(weights(osp.join(work_dir, 'iter_6.pth')),
                         weights(osp.join(ref_dir, 'iter_6.pth')))


def test_epoch_based_config_resumes_exactly_from_an_epoch_end(data_root,
                                                              tmp_path):
    """EpochBasedTrainLoop, checkpoint at each epoch end, SIGKILL inside
    epoch 2: the resume starts epoch 2 afresh (nothing to skip) with the
    saved RNG states and ends bit-identical to an uninterrupted run."""
    ref_dir = str(tmp_path / 'reference')
    train(ref_dir, data_root, config=EPOCH_CFG)
    work_dir = str(tmp_path / 'run')
    marker = osp.join(work_dir, 'paused')
    assert train_and_kill(work_dir, data_root, marker, config=EPOCH_CFG,
                          FAULT_PAUSE_AFTER_ITER='5') == -9
    assert not osp.exists(osp.join(work_dir, 'epoch_2.pth'))
    counts = str(tmp_path / 'loads.json')
    proc = train(work_dir, data_root, resume=True, config=EPOCH_CFG,
                 FAULT_COUNT_LOADS=counts)
    assert 'resumed epoch: 1, iter: 3' in proc.stdout + proc.stderr
    with open(counts) as f:
        assert json.load(f) == dict(iter=4, loads=4)  # its own batch only
    assert_bitwise_equal(weights(osp.join(work_dir, 'epoch_2.pth')),
                         weights(osp.join(ref_dir, 'epoch_2.pth')))


# ------------------------------------------------------ per-sample seeds ---
LONG = ['train_cfg.max_iters=12']  # 4 epochs of 3 iterations


def _loads(path: str) -> int:
    """Training samples loaded (validation loads left out)."""
    with open(path) as f:
        return sum('/train' in line for line in f)


@pytest.fixture(scope='module')
def seeded_reference(tmp_path_factory, data_root) -> str:
    """12 iterations with per-sample seeds and no worker processes."""
    work_dir = str(tmp_path_factory.mktemp('seeded_reference'))
    train(work_dir, data_root, config=SEEDED_CFG, extra=LONG)
    return work_dir


@pytest.mark.parametrize('persistent', [False, True])
def test_workers_with_sample_seeds_resume_at_the_sampler_exactly(
        seeded_reference, data_root, tmp_path, persistent):
    """Two workers, per-sample seeds: the resume at iteration 8 loads none
    of the 32 trained samples beyond what the loop's first loader iterator
    prefetches when it is built (4 batches, capped here by the 3 of an
    epoch; mmengine#1520's replay would load all 32) and ends
    bit-identical. Without persistent workers the run is
    even identical to the run without workers it resumes from: the samples
    no longer depend on who loads them."""
    extra = LONG + WORKERS + [
        f'train_dataloader.persistent_workers={persistent}']
    ref_dir = seeded_reference
    if persistent:  # its loader draws one base seed per run, not per epoch
        ref_dir = str(tmp_path / 'reference')
        train(ref_dir, data_root, config=SEEDED_CFG, extra=extra)
    log = str(tmp_path / 'loads.txt')
    out, _ = _resume_from(ref_dir, 8, str(tmp_path / 'run'), data_root,
                          config=SEEDED_CFG, extra=extra,
                          FAULT_LOG_LOADS=log)
    assert 'ExactResumeHook: 8 batches skipped at the sampler' in out
    remaining = (12 - 8) * 4
    assert remaining <= _loads(log) <= remaining + 3 * 4
    assert_bitwise_equal(weights(str(tmp_path / 'run' / 'iter_12.pth')),
                         weights(osp.join(ref_dir, 'iter_12.pth')))


def test_upernet_with_workers_and_sample_seeds_resumes_exactly(
        seg_data_root, tmp_path):
    """InfiniteSampler (the ADE20k configs) with two workers: the stream
    restarts at the saved position and the run ends bit-identical."""
    config = osp.join(osp.dirname(COSUB_CFG), 'cosub_tiny_upernet_seeded.py')
    ref_dir = str(tmp_path / 'reference')
    train(ref_dir, seg_data_root, config=config, extra=WORKERS)
    out, _ = _resume_from(ref_dir, 4, str(tmp_path / 'run'), seg_data_root,
                          config=config, extra=WORKERS)
    assert 'ExactResumeHook: 4 batches skipped at the sampler' in out
    assert_bitwise_equal(weights(str(tmp_path / 'run' / 'iter_6.pth')),
                         weights(osp.join(ref_dir, 'iter_6.pth')))


@pytest.mark.parametrize('persistent', [False, True])
def test_epoch_based_with_workers_and_sample_seeds_resumes_exactly(
        data_root, tmp_path, persistent):
    """EpochBasedTrainLoop with two workers, resumed from the end of epoch
    1: it loads exactly epoch 2's 12 samples and ends bit-identical (new
    persistent workers are started before the RNG states are restored, so
    the loader's base-seed draw stays where the uninterrupted run had
    it)."""
    config = EPOCH_CFG.replace('.py', '_seeded.py')
    extra = WORKERS + [f'train_dataloader.persistent_workers={persistent}']
    ref_dir = str(tmp_path / 'reference')
    train(ref_dir, data_root, config=config, extra=extra)
    work_dir = str(tmp_path / 'run')
    _copy_checkpoint(ref_dir, 'epoch_1.pth', work_dir)
    log = str(tmp_path / 'loads.txt')
    proc = train(work_dir, data_root, resume=True, config=config,
                 extra=extra, FAULT_LOG_LOADS=log)
    assert 'resumed epoch: 1, iter: 3' in proc.stdout + proc.stderr
    assert _loads(log) == 12
    assert_bitwise_equal(weights(osp.join(work_dir, 'epoch_2.pth')),
                         weights(osp.join(ref_dir, 'epoch_2.pth')))
