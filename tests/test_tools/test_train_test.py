"""tools/train.py, tools/test.py and tools/dist_train.sh end to end.

Tiny configs train a few iterations on generated data; a checkpoint is
saved, --resume continues from the saved iteration, tools/test.py evaluates.
"""
import json
import os.path as osp
import re
import sys

import pytest
import torch

from conftest import REPO, TEST_CONFIGS, free_port, run_tool, tool_env

CLS_CFG = osp.join(TEST_CONFIGS, 'tiny_cls.py')


def data_options(root: str) -> list:
    return [f'{split}_dataloader.dataset.data_root={root}'
            for split in ('train', 'val', 'test')]


def last_iter(work_dir: str) -> int:
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return int(re.search(r'iter_(\d+)\.pth', f.read()).group(1))


# UperNet's train/resume and test are covered by
# test_upernet_with_infinite_sampler_resumes_exactly_with_zero_replay and
# the tools/test.py run of tests/test_configs/test_upernet_configs.py.
@pytest.mark.parametrize('cfg, fixture, metric', [
    (CLS_CFG, 'cls_data_root', 'accuracy/top1'),
])
def test_train_resume_and_test(cfg, fixture, metric, tmp_path, request):
    data = request.getfixturevalue(fixture)
    work_dir = str(tmp_path / 'work')
    opts = data_options(data)
    run_tool(['tools/train.py', cfg, '--work-dir', work_dir,
              '--cfg-options'] + opts)
    assert last_iter(work_dir) == 4
    first = torch.load(osp.join(work_dir, 'iter_4.pth'), weights_only=False)
    assert first['meta']['iter'] == 4

    proc = run_tool(['tools/train.py', cfg, '--work-dir', work_dir,
                     '--resume', '--cfg-options', 'train_cfg.max_iters=6'] +
                    opts)
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 0, iter: 4' in log
    assert last_iter(work_dir) == 6
    resumed = torch.load(osp.join(work_dir, 'iter_6.pth'), weights_only=False)
    assert resumed['meta']['iter'] == 6
    # The optimizer state continued: AdamW's step count went 4 -> 6.
    steps = {int(s['step']) for s in
             resumed['optimizer']['state'].values()}
    assert steps == {6}

    out = str(tmp_path / 'metrics.json')
    proc = run_tool(['tools/test.py', cfg, osp.join(work_dir, 'iter_6.pth'),
                     '--work-dir', work_dir, '--cfg-options'] + opts)
    log = proc.stdout + proc.stderr
    assert re.search(re.escape(metric) + r': \d+\.\d+', log), log[-2000:]


def test_test_tool_writes_classification_predictions(cls_data_root,
                                                     tmp_path):
    work_dir = str(tmp_path / 'work')
    opts = data_options(cls_data_root)
    run_tool(['tools/train.py', CLS_CFG, '--work-dir', work_dir,
              '--no-validate', '--cfg-options', 'train_cfg.max_iters=2'] +
             opts)
    assert last_iter(work_dir) == 2
    out = str(tmp_path / 'preds.pkl')
    proc = run_tool(['tools/test.py', CLS_CFG,
                     osp.join(work_dir, 'iter_2.pth'), '--work-dir',
                     work_dir, '--out', out, '--tta', '--cfg-options'] + opts)
    assert 'AverageClsScoreTTA' in (proc.stdout + proc.stderr)
    import pickle
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 3 * 8  # every validation image
    assert preds[0]['pred_score'].shape == (3, )
    assert abs(float(preds[0]['pred_score'].sum()) - 1.0) < 1e-5


def test_dist_train_two_processes_gloo(cls_data_root, tmp_path):
    work_dir = str(tmp_path / 'work')
    env = tool_env(PYTHON=sys.executable, PORT=str(free_port()),
                   PYTHONFAULTHANDLER='1')
    import subprocess
    proc = subprocess.run(
        ['bash', 'tools/dist_train.sh', CLS_CFG, '2', '--work-dir', work_dir,
         '--cfg-options'] + data_options(cls_data_root),
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-3000:]
    assert 'Distributed training: True' in log
    # 24 validation images, batch 4, split over 2 ranks: 3 batches each.
    assert 'Epoch(val) [0][3/3]' in log
    assert last_iter(work_dir) == 4


def test_dist_train_cosub_efficient_when_a_batch_drops_a_whole_block(
        cls_data_root, tmp_path):
    """At drop rate 0.9 the 8 rows of a step often all drop a branch; DDP
    still needs a (zero) gradient for its parameters, as in masked cosub."""
    work_dir = str(tmp_path / 'work')
    env = tool_env(PYTHON=sys.executable, PORT=str(free_port()),
                   PYTHONFAULTHANDLER='1')
    import subprocess
    proc = subprocess.run(
        ['bash', 'tools/dist_train.sh', CLS_CFG, '2', '--work-dir', work_dir,
         '--cfg-options', 'model.type=cosub_mm.CosubClassifier',
         'model.efficient_drop_path=True',
         'model.backbone.drop_path_rate=0.9', 'randomness.seed=0'] +
        data_options(cls_data_root),
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-3000:]
    assert 'loss_distill' in log and last_iter(work_dir) == 4


def test_train_length_scales_the_run_and_test_writes_metrics(cls_data_root,
                                                            tmp_path):
    work_dir = str(tmp_path / 'work')
    run_tool(['tools/train.py', CLS_CFG, '--work-dir', work_dir,
              '--length', '3', '--test', '--cfg-options'] +
             data_options(cls_data_root))
    assert last_iter(work_dir) == 3
    with open(osp.join(work_dir, 'test_metrics.json')) as f:
        metrics = json.load(f)
    # the runner's own test loop on the 24 validation images: a multiple
    # of 1/24
    top1 = metrics['accuracy/top1']
    assert 0.0 <= top1 <= 100.0
    assert abs(top1 * 24 / 100 - round(top1 * 24 / 100)) < 1e-4
