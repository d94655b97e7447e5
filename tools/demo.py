"""`make demo`: cosub on Fashion-MNIST, end to end, offline, on a CPU.

Stages (each a ``tools/*.py`` subprocess, so the runner's log shows):

1. cosub pretraining of the demo ViT (``configs/demo/cosub_*.py``) on a
   Fashion-MNIST subset, with top-1 on the 10,000 test images at the end;
   with ``--baseline`` its baseline twin too;
2. backbone export: ``{work_dir}/cosub/backbone.pth`` (``backbone.`` keys),
   written by the config's ``cosub_mm.BackboneExportHook``;
3. the accuracy of the network's submodels (blocks removed at test time),
   ``tools/analysis_tools/submodel_accuracy.py``: CSV and PNG;
4. UperNet finetuning of the exported backbone on the real-pixel scene set
   (``configs/demo/upernet_fashion-scenes.py`` and
   ``tools/dataset_converters/make_fashion_scenes.py``) and its mIoU, when
   both files exist.

It ends with a results table and the paths of the checkpoints and plots.

Usage:
    python tools/demo.py [--work-dir work_dirs/demo] [--epochs 8]
        [--num-train 2000] [--baseline] [--no-seg] [--cfg-options K=V ...]
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

# This checkout's cosub_mm first (not an installed copy), then the tools.
sys.path[:0] = [osp.dirname(osp.dirname(osp.abspath(__file__))),
                osp.join(osp.dirname(osp.abspath(__file__)), 'analysis_tools')]
from replicate_fashion_mnist import (BASE_CFG, COSUB_CFG, REPO,  # noqa: E402
                                     check_fashion_mnist, read_val_history,
                                     run_training, schedule_options, train_env)

SEG_CFG = 'configs/demo/upernet_fashion-scenes.py'
SCENES_TOOL = 'tools/dataset_converters/make_fashion_scenes.py'


def default_threads() -> int:
    """Torch threads per process: the cores the machine has free now.

    On a loaded machine one thread per process was measured ten times
    faster than two (threads waiting on each other).
    """
    cores = os.cpu_count() or 1
    try:
        free = cores - os.getloadavg()[0]
    except OSError:
        free = cores
    return max(1, min(cores, int(round(free))))


def banner(text: str) -> None:
    print(f'\n===== {text} =====', flush=True)


def plot_training(work_dirs: Dict[str, str], png: str) -> None:
    """Training loss and test top-1 of the demo runs, one PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5), dpi=110)
    for label, wd in work_dirs.items():
        stamp = sorted(d for d in os.listdir(wd) if osp.isfile(
            osp.join(wd, d, 'vis_data', 'scalars.json')))[-1]
        train, val = [], []
        with open(osp.join(wd, stamp, 'vis_data', 'scalars.json')) as f:
            for line in f:
                rec = json.loads(line)
                if 'loss_label' in rec:  # cosub: the supervised part
                    train.append((rec['step'], rec['loss_label'] * 2))
                elif 'loss' in rec:
                    train.append((rec['step'], rec['loss']))
                if 'accuracy/top1' in rec:
                    val.append((rec['step'], rec['accuracy/top1']))
        if train:
            ax1.plot(*zip(*train), label=label)
        if val:
            ax2.plot(*zip(*val), marker='o', label=label)
    ax1.set_xlabel('iteration')
    ax1.set_ylabel('cross-entropy with the labels')
    ax2.set_xlabel('epoch')
    ax2.set_ylabel('test top-1 (%)')
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def run_tool(args: List[str], threads: int) -> None:
    """Run ``python tools/...``; its output goes straight to the terminal."""
    cmd = [sys.executable] + args
    rc = subprocess.call(cmd, cwd=REPO, env=train_env(threads))
    if rc != 0:
        raise SystemExit(f'demo: {" ".join(cmd)} failed (exit {rc})')


def read_miou(work_dir: str) -> float:
    """The last ``mIoU`` an mmseg run logged."""
    stamps = sorted(d for d in os.listdir(work_dir) if osp.isfile(
        osp.join(work_dir, d, 'vis_data', 'scalars.json')))
    miou = None
    with open(osp.join(work_dir, stamps[-1], 'vis_data', 'scalars.json')) \
            as f:
        for line in f:
            rec = json.loads(line)
            if 'mIoU' in rec:
                miou = rec['mIoU']
    if miou is None:
        raise RuntimeError(f'no mIoU logged under {work_dir}')
    return float(miou)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--epochs', type=int, default=8)
    parser.add_argument('--num-train', type=int, default=2000,
                        help='first N training images (60000: all)')
    parser.add_argument('--num-test', type=int, default=None,
                        help='first N test images (default all 10,000)')
    parser.add_argument('--baseline', action='store_true',
                        help='also train the baseline twin (same recipe, '
                        'no cosub) and compare')
    parser.add_argument('--submodel-num-test', type=int, default=1000)
    parser.add_argument('--submodel-num-random', type=int, default=16)
    parser.add_argument('--no-seg', action='store_true',
                        help='skip the segmentation stage')
    parser.add_argument('--seg-num-train', type=int, default=200)
    parser.add_argument('--seg-num-val', type=int, default=50)
    parser.add_argument('--seg-size', type=int, default=64)
    parser.add_argument('--seg-data-root', default='data/fashion_scenes')
    parser.add_argument('--seg-cfg-options', nargs='+', default=[],
                        help='overrides for the UperNet config, K=V')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads per process (default: the '
                        'cores free now)')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='overrides for the classification configs, K=V')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    start = time.time()
    check_fashion_mnist()
    threads = args.threads or default_threads()
    work_dir = args.work_dir if osp.isabs(args.work_dir) else osp.join(
        REPO, args.work_dir)
    os.makedirs(work_dir, exist_ok=True)
    print(f'demo: work dir {work_dir}, {threads} thread(s) per process',
          flush=True)

    options: Dict[str, object] = schedule_options(
        args.epochs, val_interval=args.epochs)
    options['train_dataloader.dataset.indices'] = args.num_train
    if args.num_test:
        options['val_dataloader.dataset.indices'] = args.num_test
        options['test_dataloader.dataset.indices'] = args.num_test
    for kv in args.cfg_options:
        key, value = kv.split('=', 1)
        options[key] = value

    runs = [('cosub', COSUB_CFG)]
    if args.baseline:
        runs.append(('baseline', BASE_CFG))
    results: Dict[str, dict] = {}
    for i, (label, config) in enumerate(runs, 1):
        banner(f'stage 1.{i}: {label} pretraining on Fashion-MNIST '
               f'({args.num_train} images, {args.epochs} epochs)')
        run_dir = osp.join(work_dir, label)
        wall = run_training(config, run_dir, options, threads=threads,
                            echo=lambda s: print(s, flush=True))
        top1 = read_val_history(run_dir)[-1]['accuracy/top1']
        with open(osp.join(run_dir, 'last_checkpoint')) as f:
            ckpt = f.read().strip()
        results[label] = dict(config=config, checkpoint=ckpt, top1=top1,
                              wall_s=wall, work_dir=run_dir)
        print(f'{label}: test top-1 {top1:.2f} % in {wall:.0f} s',
              flush=True)

    banner('stage 2: backbone export')
    backbone = osp.join(results['cosub']['work_dir'], 'backbone.pth')
    if not osp.isfile(backbone):
        raise SystemExit(f'demo: {backbone} is missing: the config\'s '
                         'cosub_mm.BackboneExportHook did not write it')
    print(f'cosub_mm.BackboneExportHook wrote {backbone}', flush=True)

    banner('stage 3: accuracy of the submodels (blocks removed at test time)')
    sub_dir = osp.join(work_dir, 'submodels')
    sub_args = ['tools/analysis_tools/submodel_accuracy.py']
    for label, res in results.items():
        sub_args += ['--model', label, res['config'], res['checkpoint']]
    sub_args += ['--out-dir', sub_dir,
                 '--num-test', str(args.submodel_num_test),
                 '--num-random', str(args.submodel_num_random),
                 '--random-k-trials', '2']
    model_opts = [kv for kv in args.cfg_options if kv.startswith('model.')]
    if model_opts:
        sub_args += ['--cfg-options'] + model_opts
    run_tool(sub_args, threads)
    sub_png = osp.join(sub_dir, 'submodel_accuracy.png')
    import csv
    with open(osp.join(sub_dir, 'submodel_accuracy.csv')) as f:
        rows = list(csv.DictReader(f))
    for label, res in results.items():
        rand = [float(r['top1']) for r in rows if r['model'] == label
                and r['kind'] == 'random_submodel']
        half = [float(r['top1']) for r in rows if r['model'] == label
                and r['kind'] == 'last_k']
        res['submodel_mean'] = sum(rand) / len(rand) if rand else None
        res['last_half_removed'] = half[len(half) // 2] if half else None

    train_png = osp.join(work_dir, 'training.png')
    plot_training({k: v['work_dir'] for k, v in results.items()}, train_png)

    banner('stage 4: UperNet finetuning on the Fashion-MNIST scenes')
    miou = None
    seg_ckpt = None
    if args.no_seg:
        print('skipped (--no-seg)', flush=True)
    elif not (osp.isfile(osp.join(REPO, SEG_CFG))
              and osp.isfile(osp.join(REPO, SCENES_TOOL))):
        print(f'unavailable: {SEG_CFG} or {SCENES_TOOL} is not in this '
              'checkout yet (the segmentation issue)', flush=True)
    else:
        scenes = args.seg_data_root if osp.isabs(args.seg_data_root) \
            else osp.join(REPO, args.seg_data_root)
        stamp = osp.join(scenes, '.complete')
        wanted = f'{args.seg_num_train} {args.seg_num_val} {args.seg_size}'
        if not (osp.isfile(stamp) and open(stamp).read() == wanted):
            print(f'generating the scene set in {scenes}', flush=True)
            run_tool([SCENES_TOOL, '--out-dir', scenes, '--seed', '0',
                      '--num-train', str(args.seg_num_train),
                      '--num-val', str(args.seg_num_val),
                      '--size', str(args.seg_size)], threads)
            with open(stamp, 'w') as f:
                f.write(wanted)
        seg_dir = osp.join(work_dir, 'upernet')
        seg_opts = {
            'model.backbone.init_cfg.checkpoint': backbone,
            'train_dataloader.dataset.data_root': scenes,
            'val_dataloader.dataset.data_root': scenes,
            'test_dataloader.dataset.data_root': scenes,
        }
        for kv in args.seg_cfg_options:
            key, value = kv.split('=', 1)
            seg_opts[key] = value
        run_training(SEG_CFG, seg_dir, seg_opts, threads=threads,
                     echo=lambda s: print(s, flush=True))
        miou = read_miou(seg_dir)
        last = osp.join(seg_dir, 'last_checkpoint')
        if osp.isfile(last):
            with open(last) as f:
                seg_ckpt = f.read().strip()

    wall = time.time() - start
    banner(f'results (demo wall time {wall:.0f} s)')
    print('| model | Fashion-MNIST top-1 (%) | random submodels, mean top-1 '
          '| half the blocks removed | train wall time (s) |')
    print('|---|---|---|---|---|')
    for label, res in results.items():
        sub = res['submodel_mean']
        half = res['last_half_removed']
        print(f'| {label} | {res["top1"]:.2f} | '
              f'{"-" if sub is None else f"{sub:.2f}"} | '
              f'{"-" if half is None else f"{half:.2f}"} | '
              f'{res["wall_s"]:.0f} |')
    if miou is not None:
        print(f'\nUperNet on the cosub backbone, Fashion-MNIST scenes: '
              f'mIoU {miou:.2f}')
    print('\ncheckpoints:')
    for label, res in results.items():
        print(f'  {label}: {res["checkpoint"]}')
    print(f'  cosub backbone: {backbone}')
    if seg_ckpt:
        print(f'  upernet: {seg_ckpt}')
    print('plots:')
    print(f'  training curves: {train_png}')
    print(f'  submodel accuracy: {sub_png}', flush=True)
    summary = dict(results=results, backbone=backbone, miou=miou,
                   seg_checkpoint=seg_ckpt, plots=[train_png, sub_png],
                   wall_s=wall)
    with open(osp.join(work_dir, 'demo_results.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    return summary


if __name__ == '__main__':
    main()
