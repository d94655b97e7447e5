"""Benchmark: time from ``--resume`` to the first new iteration.

Trains a tiny iteration-based cosub run of the demo's kind (Fashion-MNIST,
``InfiniteSampler``, random crop + flip, ``cosub_mm.ExactResumeHook``) with
checkpoints at iteration ``--early`` and ``--late``, then resumes each
checkpoint for one more iteration, with the hook's sampler-level skip (the
default) and with mmengine's replay (``skip_at_sampler=False``), and prints
the wall time of each resume side by side; ``--workers N`` loads with N
worker processes and per-sample seeds (``cosub_mm.SampleSeedSampler``),
whose resume skips at the sampler too. The resumes run one after the
other in this process's machine state; the machine's load is printed.

Usage:
    python tools/analysis_tools/benchmark_resume.py [--early 20]
        [--late 2000] [--batch 64] [--workers 0] [--work-dir DIR]
"""
import argparse
import os
import os.path as osp
import shutil
import sys
import tempfile
import time
from typing import Dict, Optional, Sequence

sys.path.insert(
    0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
from cosub_mm.runs import (REPO, check_fashion_mnist,  # noqa: E402
                           train_config)

DEMO_CFG = osp.join(
    REPO, 'configs', 'demo',
    'cosub_vit-6l-96d-p7_1xb256-adamw-700i_fashion-mnist.py')


def config_text(batch: int, skip_at_sampler: bool = True,
                workers: int = 0) -> str:
    """A tiny demo-like run with exact resume; with ``workers``, that many
    loader processes drawing per-sample seeds (``SampleSeedSampler``)."""
    loader = f'batch_size={batch}'
    if workers:
        loader += (
            f', num_workers={workers}, persistent_workers=False, '
            'sampler=dict(_delete_=True, type="cosub_mm.SampleSeedSampler", '
            'sampler=dict(type="InfiniteSampler", shuffle=True)), '
            'dataset=dict(type="cosub_mm.SampleSeedDataset", '
            'dataset=dict(type="FashionMNIST"))')
    return '\n'.join([
        f'_base_ = [{DEMO_CFG!r}]',
        'model = dict(backbone=dict(arch=dict(embed_dims=16, num_layers=2,'
        ' num_heads=1, feedforward_channels=32)), head=dict(in_channels=16))',
        f'train_dataloader = dict({loader})',
        '# no validation: a run ending after its first new iteration would',
        '# validate on 10,000 images',
        'val_dataloader = None', 'val_cfg = None', 'val_evaluator = None',
        'custom_hooks = [dict(type="cosub_mm.DropPathRateHook", '
        'rule="uniform")]',
        # the runtime's exact_resume hook (a second one would be refused)
        'default_hooks = dict(exact_resume=dict('
        f'skip_at_sampler={skip_at_sampler}))',
        'randomness = dict(seed=0)',
    ]) + '\n'


def _load() -> str:
    try:
        return ' '.join(f'{v:.2f}' for v in os.getloadavg())
    except OSError:
        return 'unknown'


def benchmark(early: int, late: int, batch: int, work_dir: str,
              threads: int = 1,
              workers: int = 0) -> Dict[str, Dict[int, float]]:
    """Resume wall times ``{mode: {iteration: seconds}}``."""
    check_fashion_mnist(osp.join(REPO, 'data', 'fashion_mnist'))
    os.makedirs(work_dir, exist_ok=True)
    configs = {}
    for mode, skip in (('sampler skip', True), ('replay', False)):
        configs[mode] = osp.join(work_dir, f'{mode.replace(" ", "_")}.py')
        with open(configs[mode], 'w') as f:
            f.write(config_text(batch, skip, workers))
    train_dir = osp.join(work_dir, 'train')
    print(f'training {late} iterations (checkpoints at {early} and {late})',
          flush=True)
    train_config(configs['sampler skip'], train_dir, [
        '--cfg-options', f'train_cfg.max_iters={late + 1}',
        'default_hooks.checkpoint.by_epoch=False',
        f'default_hooks.checkpoint.save_begin={early}',
        f'default_hooks.checkpoint.interval={late - early}',
        'default_hooks.checkpoint.max_keep_ckpts=-1'], threads=threads)
    times: Dict[str, Dict[int, float]] = {}
    for mode, config in configs.items():
        times[mode] = {}
        for at in (early, late):
            run_dir = osp.join(work_dir, f'{mode}_{at}')
            shutil.rmtree(run_dir, ignore_errors=True)
            os.makedirs(run_dir)
            ckpt = osp.join(run_dir, f'iter_{at}.pth')
            shutil.copyfile(osp.join(train_dir, f'iter_{at}.pth'), ckpt)
            start = time.time()
            train_config(config, run_dir, [
                '--resume', ckpt, '--cfg-options',
                f'train_cfg.max_iters={at + 1}',
                'default_hooks.checkpoint.interval=1000000'],
                threads=threads)
            times[mode][at] = time.time() - start
            print(f'{mode:>12}: resume at iteration {at:>5} -> first new '
                  f'iteration in {times[mode][at]:.1f} s', flush=True)
    return times


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict[int, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--early', type=int, default=20)
    parser.add_argument('--late', type=int, default=2000)
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--workers', type=int, default=0,
                        help='data loader processes (per-sample seeds)')
    parser.add_argument('--work-dir', default=None)
    args = parser.parse_args(argv)
    if not 0 < args.early < args.late:
        raise SystemExit('benchmark_resume: need 0 < --early < --late')
    load_start = _load()
    work_dir = args.work_dir or tempfile.mkdtemp(prefix='benchmark_resume_')
    times = benchmark(args.early, args.late, args.batch, work_dir,
                      args.threads, args.workers)
    print(f'\nresume -> first new iteration (s), batch {args.batch}, '
          f'{args.threads} thread(s), {args.workers} loader worker(s); '
          f'load at start {load_start}, at end {_load()}')
    print(f'| mode | at {args.early} | at {args.late} | late / early |')
    print('|---|---|---|---|')
    for mode, t in times.items():
        print(f'| {mode} | {t[args.early]:.1f} | {t[args.late]:.1f} | '
              f'{t[args.late] / t[args.early]:.2f} |')
    return times


if __name__ == '__main__':
    main()
