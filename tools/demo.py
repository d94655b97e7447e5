"""`make demo`: cosub on Fashion-MNIST, end to end, offline, on a CPU.

Stages (each a ``tools/*.py`` subprocess, so the runner's log shows):

1. cosub training of the demo ViT (``configs/demo/cosub_*.py``) on the
   60,000 Fashion-MNIST training images, evaluated on the 10,000 test images
   during training and once at the end; with ``--baseline`` its baseline
   twin too;
2. backbone export: ``{work_dir}/cosub/backbone.pth`` (``backbone.`` keys),
   written by the config's ``cosub_mm.BackboneExportHook``;
3. the accuracy of the network's submodels (blocks removed at test time),
   ``tools/analysis_tools/submodel_accuracy.py``: CSV and PNG;
4. UperNet finetuning of the exported backbone on the real-pixel RGB scene
   set (``configs/demo/upernet_fashion-scenes.py``), its mIoU curve, the best
   and worst classes, a PNG of validation scenes
   (``tools/analysis_tools/seg_predictions.py``) and ``tools/infer.py`` on
   one of them (an overlay with a legend).

It ends with a results table, the committed study's headline beside it
(``docs/results/fashion_mnist_summary.json``) and the paths of the
checkpoints and plots.

Usage:
    python tools/demo.py [--work-dir work_dirs/demo] [--iters 700]
        [--num-train N] [--baseline] [--no-seg] [--seg-iters 600]
        [--record docs/results/demo.json] [--cfg-options K=V ...]
    python tools/demo.py --record-from work_dirs/demo/demo_results.json \
        --record docs/results/demo.json

``--record`` writes the run's numbers as a small JSON record, the markdown
generated from it (``demo.md``, copied into README.md by
``tools/misc/update_readme.py``) and copies of its PNGs beside it.
"""
import argparse
import csv
import json
import os
import os.path as osp
import shutil
import time
from typing import Dict, List, Optional, Sequence, Tuple

from cosub_mm.runs import (REPO, check_fashion_mnist, format_options,
                           last_checkpoint, metric_history, read_scalars,
                           run_tool, tool_env, train_config)

COSUB_CFG = 'configs/demo/cosub_vit-6l-96d-p7_1xb256-adamw-700i_fashion-mnist.py'
BASE_CFG = 'configs/demo/vit-6l-96d-p7_1xb256-adamw-700i_fashion-mnist.py'
SEG_CFG = 'configs/demo/upernet_fashion-scenes.py'
SCENES_TOOL = 'tools/dataset_converters/make_fashion_scenes.py'
STUDY_SUMMARY = 'docs/results/fashion_mnist_summary.json'
SEG_STUDY = 'docs/results/fashion_scenes.md'
SEG_SUMMARY = 'docs/results/fashion_scenes_summary.json'


def default_threads() -> int:
    """Torch threads per process: the cores the machine has free now."""
    cores = os.cpu_count() or 1
    try:
        free = cores - os.getloadavg()[0]
    except OSError:
        free = cores
    return max(1, min(cores, int(round(free))))


def banner(text: str) -> None:
    print(f'\n===== {text} =====', flush=True)


def run_or_exit(args: List[str], threads: int) -> None:
    """Run a tool with its output on the terminal; exit on failure."""
    proc = run_tool(args, env=tool_env(threads), capture=False)
    if proc.returncode != 0:
        raise SystemExit(f'demo: {" ".join(args)} failed '
                         f'(exit {proc.returncode})')


def plot_training(curves: Dict[str, dict], png: str) -> None:
    """Training loss and test top-1 over iterations, one PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5), dpi=110)
    for label, c in curves.items():
        if c['loss']:
            ax1.plot(*zip(*c['loss']), label=label)
        if c['top1']:
            ax2.plot(*zip(*c['top1']), marker='o', label=label)
    ax1.set_xlabel('iteration')
    ax1.set_ylabel('cross-entropy with the labels')
    ax2.set_xlabel('iteration')
    ax2.set_ylabel('test top-1 (%)')
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def study_headline() -> Optional[str]:
    """The committed study's headline, one line, or None."""
    path = osp.join(REPO, STUDY_SUMMARY)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        summary = json.load(f)
    lines = []
    for h in summary.get('headlines', []):
        iv = h.get('equal_iterations')
        if not iv or 'cosub' not in h:
            continue
        ci = ('' if iv['low'] is None else
              f" [{iv['low']:+.2f}, {iv['high']:+.2f}] 95 % CI")
        lines.append(
            f"{h['num_train']:,} training images, {h['seeds']} seeds: cosub "
            f"{h['cosub']:.2f} vs baseline {h['baseline']:.2f} % test top-1, "
            f"paired difference {iv['mean']:+.2f}{ci}")
    if not lines:
        return ('no paired cosub/baseline result yet (see '
                f'{summary["source"]})')
    return '\n'.join(lines) + f'\n(from {summary["source"]})'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--iters', type=int, default=None,
                        help='training iterations (default: the config\'s '
                        '700); the schedule scales along')
    parser.add_argument('--num-train', type=int, default=None,
                        help='first N training images (default all 60,000)')
    parser.add_argument('--num-test', type=int, default=None,
                        help='first N test images (default all 10,000)')
    parser.add_argument('--baseline', action='store_true',
                        help='also train the baseline twin (same recipe, '
                        'no cosub) and compare')
    parser.add_argument('--submodel-num-test', type=int, default=1000)
    parser.add_argument('--submodel-num-random', type=int, default=16)
    parser.add_argument('--no-seg', action='store_true',
                        help='skip the segmentation stage')
    parser.add_argument('--seg-iters', type=int, default=None,
                        help='UperNet iterations (default: the config\'s)')
    parser.add_argument('--seg-num-train', type=int, default=400)
    parser.add_argument('--seg-num-val', type=int, default=100)
    parser.add_argument('--seg-size', type=int, default=64)
    parser.add_argument('--seg-data-root', default='data/fashion_scenes')
    parser.add_argument('--seg-cfg-options', nargs='+', default=[],
                        help='overrides for the UperNet config, K=V')
    parser.add_argument('--data-root', default='data/fashion_mnist')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads per process (default: the '
                        'cores free now)')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='overrides for the classification configs, K=V')
    parser.add_argument('--record', default=None,
                        help='write the run record (JSON), its markdown and '
                        'PNGs here, e.g. docs/results/demo.json')
    parser.add_argument('--record-from', default=None,
                        help='train nothing: record the demo_results.json '
                        'of an earlier run (with --record)')
    parser.add_argument('--refresh-record', default=None, metavar='JSON',
                        help='train nothing: give a committed record (e.g. '
                        'docs/results/demo.json) the current study headline '
                        'and rewrite its markdown')
    return parser.parse_args(argv)


def refresh_record(path: str) -> str:
    """Give a written record the committed study's headline; its md."""
    with open(path) as f:
        record = json.load(f)
    record['study'] = study_headline()
    if record.get('seg'):
        record['seg']['flat'] = flat_text([
            (int(step), float(v)) for step, v in
            (p.split(': ') for p in record['seg']['curve'].split(', '))])
    with open(path, 'w') as f:
        json.dump(record, f, indent=1)
    md = render_record(record)
    with open(osp.splitext(path)[0] + '.md', 'w') as f:
        f.write(md)
    return md


def write_record(summary: dict, path: str) -> str:
    """Write the demo's record, its markdown and its PNGs; return the md.

    Args:
        summary (dict): What :func:`main` wrote to ``demo_results.json``.
        path (str): The record's path (``.json``); ``.md`` and the PNGs
            (``<stem>_*.png``) go beside it.
    """
    stem = osp.splitext(path)[0]
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    pngs = []
    for src in summary['plots']:
        dst = f'{stem}_{osp.basename(src)}'
        shutil.copyfile(src, dst)
        pngs.append(osp.basename(dst))
    seg = summary.get('seg')
    record = dict(
        results={k: {f: v[f] for f in ('top1', 'submodel_mean',
                                       'last_half_removed', 'wall_s')}
                 for k, v in summary['results'].items()},
        seg=None if not seg else {f: seg[f] for f in (
            'mIoU', 'best', 'worst', 'per_class', 'curve', 'flat')},
        study=study_headline(), wall_s=round(summary['wall_s']),
        submodel_num_test=summary.get('submodel_num_test', 1000),
        load=summary.get('load'), threads=summary.get('threads'),
        pngs=pngs)
    with open(path, 'w') as f:
        json.dump(record, f, indent=1)
    md = render_record(record)
    with open(stem + '.md', 'w') as f:
        f.write(md)
    return md


def _train_share(record: dict) -> str:
    cosub = record['results'].get('cosub')
    if not cosub or not cosub.get('wall_s'):
        return ''
    return f" (cosub training {cosub['wall_s'] / 60:.1f} min of it)"


def _stuff_and_things(per_class: Dict[str, float]) -> str:
    """Mean IoU of the texture (stuff) and garment (thing) classes."""
    from cosub_mm.datasets import STUFF_TEXTURES, THING_CLASSES
    groups = (('texture', [name for name, _ in STUFF_TEXTURES]),
              ('garment', list(THING_CLASSES)))
    parts = []
    for label, names in groups:
        got = [per_class[n] for n in names if n in per_class]
        if got:
            parts.append(f'{label} classes mean {sum(got) / len(got):.2f} '
                         f'({len(got)})')
    return '; ' + ', '.join(parts) if parts else ''


def render_record(record: dict) -> str:
    """The markdown of a demo record."""
    lines = ['# make demo', '',
             'Generated by `tools/demo.py --record` from `demo.json`; do not '
             'edit by hand.', '',
             f"One `make demo` run: {record['wall_s'] / 60:.1f} min wall "
             f"time{_train_share(record)}, {record.get('threads') or '?'} "
             'thread(s) per process, '
             + ('machine load not recorded.' if record.get('load') is None
                else f"1-min load at the end {record['load']}.")
             + ' The demo is sized for a trained classifier (≥ 80 % test '
             'top-1) rather than a short run; `--iters` shortens it at a cost '
             'in accuracy.', '',
             '| model | Fashion-MNIST test top-1 (%), 10,000 images | random '
             f"submodels, mean top-1 ({record.get('submodel_num_test')} test "
             'images) | half the blocks removed (same images) | train wall '
             'time (s) |', '|---|---|---|---|---|']
    for label, r in record['results'].items():
        sub, half = r['submodel_mean'], r['last_half_removed']
        lines.append(f"| {label} | {r['top1']:.2f} | "
                     f"{'-' if sub is None else f'{sub:.2f}'} | "
                     f"{'-' if half is None else f'{half:.2f}'} | "
                     f"{r['wall_s']:.0f} |")
    seg = record.get('seg')
    if seg:
        pc = seg['per_class']
        lines += ['', f"UperNet on the exported cosub backbone, fashion "
                  f"scenes: mIoU {seg['mIoU']:.2f} (validation curve "
                  f"{seg['curve']}); best class {seg['best']} "
                  f"{pc[seg['best']]:.2f}, worst {seg['worst']} "
                  f"{pc[seg['worst']]:.2f}{_stuff_and_things(pc)}. "
                  f"{seg['flat']}"]
    lines += ['', 'The cosub study beside it: ' + (
        record['study'].replace('\n', '; ') if record.get('study') else
        'no committed study results.'), '']
    lines += [f'![{p}]({p})' for p in record['pngs']]
    return '\n'.join(lines) + '\n'


def _abs(path: str) -> str:
    return path if osp.isabs(path) else osp.join(REPO, path)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    if args.refresh_record:
        print(refresh_record(_abs(args.refresh_record)))
        return {}
    if args.record_from:
        if not args.record:
            raise SystemExit('demo: --record-from needs --record PATH')
        with open(args.record_from) as f:
            summary = json.load(f)
        print(write_record(summary, _abs(args.record)))
        return summary
    start = time.time()
    check_fashion_mnist(_abs(args.data_root))
    threads = args.threads or default_threads()
    work_dir = _abs(args.work_dir)
    os.makedirs(work_dir, exist_ok=True)
    print(f'demo: work dir {work_dir}, {threads} thread(s) per process',
          flush=True)

    options: Dict[str, object] = {}
    if args.num_train:
        options['train_dataloader.dataset.indices'] = args.num_train
    if args.num_test:
        options['val_dataloader.dataset.indices'] = args.num_test
    for kv in args.cfg_options:
        key, value = kv.split('=', 1)
        options[key] = value
    train_args = ['--test']
    if args.iters:
        train_args += ['--length', str(args.iters)]
    if options:
        train_args += ['--cfg-options'] + format_options(options)

    runs = [('cosub', COSUB_CFG)] + ([('baseline', BASE_CFG)]
                                     if args.baseline else [])
    results: Dict[str, dict] = {}
    curves: Dict[str, dict] = {}
    for i, (label, config) in enumerate(runs, 1):
        banner(f'stage 1.{i}: {label} training on Fashion-MNIST '
               f'({args.num_train or 60000} images)')
        run_dir = osp.join(work_dir, label)
        wall = train_config(config, run_dir, train_args, threads=threads,
                            echo=lambda s: print(s, flush=True))
        with open(osp.join(run_dir, 'test_metrics.json')) as f:
            top1 = json.load(f)['accuracy/top1']
        scalars = read_scalars(run_dir)
        loss = metric_history(scalars, 'loss_label') or metric_history(
            scalars, 'loss')
        if label == 'cosub':  # loss_label is weighted (1 - λ)/2 per copy
            loss = [(s, 2 * v) for s, v in loss]
        curves[label] = dict(loss=loss,
                             top1=metric_history(scalars, 'accuracy/top1'))
        results[label] = dict(config=config,
                              checkpoint=last_checkpoint(run_dir), top1=top1,
                              wall_s=wall, work_dir=run_dir)
        print(f'{label}: test top-1 {top1:.2f} % in {wall:.0f} s',
              flush=True)
    train_png = osp.join(work_dir, 'training.png')
    plot_training(curves, train_png)

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
    run_or_exit(sub_args, threads)
    sub_png = osp.join(sub_dir, 'submodel_accuracy.png')
    with open(osp.join(sub_dir, 'submodel_accuracy.csv')) as f:
        rows = list(csv.DictReader(f))
    for label, res in results.items():
        rand = [float(r['top1']) for r in rows if r['model'] == label
                and r['kind'] == 'random_submodel']
        half = [float(r['top1']) for r in rows if r['model'] == label
                and r['kind'] == 'last_k']
        res['submodel_mean'] = sum(rand) / len(rand) if rand else None
        res['last_half_removed'] = half[len(half) // 2] if half else None

    banner('stage 4: UperNet finetuning on the Fashion-MNIST scenes')
    seg = None
    if args.no_seg:
        print('skipped (--no-seg)', flush=True)
    else:
        seg = segmentation_stage(args, work_dir, backbone, threads)

    wall = time.time() - start
    banner(f'results (demo wall time {wall:.0f} s)')
    print('| model | Fashion-MNIST test top-1 (%) | random submodels, mean '
          f'top-1 ({args.submodel_num_test} test images) | half the blocks '
          'removed | train wall time (s) |')
    print('|---|---|---|---|---|')
    for label, res in results.items():
        sub, half = res['submodel_mean'], res['last_half_removed']
        print(f'| {label} | {res["top1"]:.2f} | '
              f'{"-" if sub is None else f"{sub:.2f}"} | '
              f'{"-" if half is None else f"{half:.2f}"} | '
              f'{res["wall_s"]:.0f} |')
    if seg:
        pc = seg['per_class']
        print(f"\nUperNet on the cosub backbone, Fashion-MNIST scenes: mIoU "
              f"{seg['mIoU']:.2f} (curve {seg['curve']}); best class "
              f"{seg['best']} {pc[seg['best']]:.2f}, worst {seg['worst']} "
              f"{pc[seg['worst']]:.2f}. {seg['flat']}")
    headline = study_headline()
    print('\nThe cosub study (cosub vs its baseline, paired seeds):\n' +
          (headline or f'no committed study results ({STUDY_SUMMARY})'))
    plots = [train_png, sub_png] + ([seg['png'], seg['infer_png']]
                                    if seg else [])
    print('\ncheckpoints:')
    for label, res in results.items():
        print(f'  {label}: {res["checkpoint"]}')
    print(f'  cosub backbone: {backbone}')
    if seg:
        print(f'  upernet: {seg["checkpoint"]}')
    print('plots:\n' + '\n'.join(f'  {p}' for p in plots), flush=True)
    load = round(os.getloadavg()[0], 2) if hasattr(os, 'getloadavg') \
        else None
    summary = dict(results=results, backbone=backbone, seg=seg,
                   study=headline, plots=plots, wall_s=wall, load=load,
                   threads=threads, submodel_num_test=args.submodel_num_test)
    with open(osp.join(work_dir, 'demo_results.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    if args.record:
        write_record(summary, _abs(args.record))
        print(f'record: {args.record}')
    return summary


def segmentation_stage(args: argparse.Namespace, work_dir: str,
                       backbone: str, threads: int) -> dict:
    """Generate the scenes, finetune UperNet, score and draw it."""
    scenes = _abs(args.seg_data_root)
    run_or_exit([SCENES_TOOL, '--out-dir', scenes, '--seed', '0',
                 '--num-train', str(args.seg_num_train),
                 '--num-val', str(args.seg_num_val),
                 '--size', str(args.seg_size), '--if-changed'], threads)
    seg_dir = osp.join(work_dir, 'upernet')
    seg_opts = {'model.backbone.init_cfg.checkpoint': backbone}
    for split in ('train', 'val', 'test'):
        seg_opts[f'{split}_dataloader.dataset.data_root'] = scenes
    for kv in args.seg_cfg_options:
        key, value = kv.split('=', 1)
        seg_opts[key] = value
    seg_args = ['--cfg-options'] + format_options(seg_opts)
    if args.seg_iters:
        seg_args = ['--length', str(args.seg_iters)] + seg_args
    train_config(SEG_CFG, seg_dir, seg_args, threads=threads,
                 echo=lambda s: print(s, flush=True))
    curve = metric_history(read_scalars(seg_dir), 'mIoU')
    if not curve:
        raise SystemExit(f'demo: no mIoU logged under {seg_dir}')
    ckpt = last_checkpoint(seg_dir)
    pred_dir = osp.join(work_dir, 'seg_predictions')
    run_or_exit(['tools/analysis_tools/seg_predictions.py', SEG_CFG, ckpt,
                 '--out-dir', pred_dir, '--cfg-options'] +
                format_options({k: v for k, v in seg_opts.items()
                                if 'data_root' in k}), threads)
    with open(osp.join(pred_dir, 'per_class_iou.json')) as f:
        seg = json.load(f)
    # the README's "run a trained model on your images" command, on one
    # validation scene
    infer_dir = osp.join(work_dir, 'infer')
    scene = osp.join(scenes, 'images', 'validation', 'scene_00000.jpg')
    run_or_exit(['tools/infer.py', SEG_CFG, ckpt, scene, '--out-dir',
                 infer_dir], threads)
    seg.update(
        curve=', '.join(f'{s}: {v:.1f}' for s, v in curve),
        checkpoint=ckpt, png=osp.join(pred_dir, 'seg_predictions.png'),
        infer_png=osp.join(infer_dir, 'scene_00000_overlay.png'),
        flat=flat_text(curve))
    return seg


def seg_study_length() -> Optional[Tuple[int, int, float, int, float]]:
    """The segmentation study's length check, from its committed summary.

    Returns:
        tuple | None: ``(seed, first length, its mIoU, compared length, its
        mIoU)`` of the check's first seed (baseline-init), the compared
        length being the one the study's comparisons are made at; None
        without one.
    """
    path = osp.join(REPO, SEG_SUMMARY)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        headlines = json.load(f).get('headlines') or []
    for h in headlines:
        checks = h.get('length_checks')
        if not checks:
            continue
        seed = checks[0][1][0][0]
        at = {}  # length -> mIoU of the first seed
        for n, gains in checks:
            _, at[n], at[2 * n] = gains[0]
        first, length = checks[0][0], h['iters']
        if length in at:
            return seed, first, at[first], length, at[length]
    return None


def flat_text(curve: Sequence[Tuple[int, float]]) -> str:
    """Whether the demo's mIoU curve flattened, in a sentence.

    The schedule decays the learning rate to zero by its end, so a flat end
    says the run finished its schedule, not that a longer one gains nothing:
    the sentence quotes the segmentation study, which doubles the length
    until the gain is small.
    """
    last_gain = curve[-1][1] - curve[-2][1] if len(curve) > 1 else None
    if last_gain is None or last_gain >= 1.0:
        return ('The mIoU was still rising at the end: the iteration budget '
                'stopped it (--seg-iters).')
    text = (f'The mIoU curve levels off at the end of its {curve[-1][0]}-'
            f'iteration schedule (last evaluation {last_gain:+.2f}) because '
            'the learning rate decays to zero by then')
    study = seg_study_length()
    if study is None or study[3] <= curve[-1][0]:
        return text + f'; longer schedules: `{SEG_STUDY}`.'
    seed, first, a, length, b = study
    return (text + '; a longer schedule still gains: the demo stops at '
            f'{curve[-1][0]} iterations for time (`--seg-iters`), while the '
            f'segmentation study finetunes the same recipe from {a:.2f} mIoU '
            f'at {first} iterations to {b:.2f} at {length} (baseline-init, '
            f'seed {seed}; `{SEG_STUDY}`).')


if __name__ == '__main__':
    main()
