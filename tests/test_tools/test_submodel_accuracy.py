"""tools/analysis_tools/submodel_accuracy.py on a tiny trained checkpoint.

References are independent of the tool: the runner's own test loop for the
full network, and the fact that a ViT whose blocks are all removed sees only
its class token, so it predicts one class for every image.
"""
import csv
import os.path as osp
import struct
import sys
from collections import Counter

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

import cosub_mm  # noqa: F401
from conftest import REPO

sys.path.insert(0, osp.join(REPO, 'tools', 'analysis_tools'))
import submodel_accuracy  # noqa: E402
from cosub_mm.utils import scale_schedule  # noqa: E402

COSUB_CFG = ('configs/demo/cosub_vit-6l-96d-p7_1xb256-adamw-700i_'
             'fashion-mnist.py')

NUM_TEST = 150
TINY = {
    'model.backbone.arch.embed_dims': 32,
    'model.backbone.arch.num_layers': 3,
    'model.backbone.arch.num_heads': 2,
    'model.backbone.arch.feedforward_channels': 64,
    'model.backbone.patch_size': 7,
    'model.head.in_channels': 32,
}
TINY_ARGS = [f'{k}={v}' for k, v in TINY.items()]


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    """A tiny cosub ViT trained 4 iterations; its runner's test top-1."""
    work_dir = str(tmp_path_factory.mktemp('submodel_ckpt'))
    cfg = Config.fromfile(osp.join(REPO, COSUB_CFG))
    cfg.merge_from_dict(TINY)
    scale_schedule(cfg, 4)
    cfg.merge_from_dict({
        'train_dataloader.dataset.indices': 256,
        'train_dataloader.batch_size': 64,
        'val_dataloader.dataset.indices': NUM_TEST,
        'test_dataloader.dataset.indices': NUM_TEST,
        'optim_wrapper.optimizer.lr': 3e-3,
    })
    cfg.work_dir = work_dir
    cfg.experiment_name = f'test_submodel_{osp.basename(work_dir)}'
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    return osp.join(work_dir, 'iter_4.pth'), metrics['accuracy/top1']


def _run(tmp_path, ckpt, *extra):
    out = str(tmp_path / 'out')
    csv_path, png_path = submodel_accuracy.main(
        ['--model', 'cosub', osp.join(REPO, COSUB_CFG), ckpt,
         '--out-dir', out, '--num-test', str(NUM_TEST), *extra, '--cfg-options'] + TINY_ARGS)
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    return rows, png_path


def test_csv_and_png_of_a_tiny_checkpoint(tiny_run, tmp_path):
    ckpt, runner_top1 = tiny_run
    rows, png = _run(tmp_path, ckpt, '--num-random', '5',
                     '--random-k-trials', '2')
    assert list(rows[0]) == list(submodel_accuracy.CSV_FIELDS)
    mine = [r for r in rows if r['model'] == 'cosub']
    kinds = Counter(r['kind'] for r in mine)
    # k = 0..3 last blocks, 2 draws for k = 1, 2, 5 random submodels
    assert kinds == {'last_k': 4, 'random_k': 4, 'random_submodel': 5}
    last = {int(r['k']): float(r['top1']) for r in mine
            if r['kind'] == 'last_k'}
    # nothing removed: the runner's own evaluation of the checkpoint
    assert last[0] == pytest.approx(runner_top1, abs=1e-3)
    # every block removed: only the class token reaches the head, so one
    # class for all images: top-1 is that class's share of the test labels
    from mmpretrain.datasets import FashionMNIST
    test_set = FashionMNIST(osp.join(REPO, 'data', 'fashion_mnist'),
                            test_mode=True, download=False)
    labels = [int(test_set.get_data_info(i)['gt_label'])
              for i in range(NUM_TEST)]
    shares = {100.0 * n / NUM_TEST for n in Counter(labels).values()}
    assert min(abs(last[3] - s) for s in shares) < 1e-3
    # k blocks removed lists the branches of exactly those blocks
    k1 = [r for r in mine if r['kind'] == 'last_k' and r['k'] == '1'][0]
    assert k1['dropped'] == 'layers.2.attn.out_drop;layers.2.ffn.dropout_layer'

    with open(png, 'rb') as f:
        head = f.read(24)
    assert head[:8] == b'\x89PNG\r\n\x1a\n'
    width, height = struct.unpack('>II', head[16:24])
    assert (width, height) == (1100, 440)


def test_rate_zero_samples_only_the_full_network(tiny_run, tmp_path):
    # Evaluated after the last_k rows removed every block: equal to the
    # runner's top-1 only if removing blocks is undone after each submodel.
    ckpt, runner_top1 = tiny_run
    rows, _ = _run(tmp_path, ckpt, '--num-random', '3', '--drop-rate', '0',
                   '--random-k-trials', '0')
    rand = [r for r in rows if r['kind'] == 'random_submodel']
    assert len(rand) == 3
    assert all(r['dropped'] == '' and r['k'] == '0' for r in rand)
    assert all(float(r['top1']) == pytest.approx(runner_top1, abs=1e-3)
               for r in rand)
