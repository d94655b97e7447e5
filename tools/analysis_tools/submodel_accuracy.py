"""Top-1 of the submodels of a checkpoint: the "2^L submodels" picture.

Cosub (Touvron et al., *Co-training 2^L Submodels for Visual Recognition*,
CVPR 2023) trains every submodel that stochastic depth can sample. This tool
evaluates, on the config's test set, deterministic submodels of one or more
checkpoints:

- ``last_k``: the last k residual blocks removed, k = 0..L;
- ``random_k``: k blocks removed at random (``--random-k-trials`` draws);
- ``random_submodel``: ``--num-random`` submodels sampled as in training,
  every drop-path branch removed with its training rate (or ``--drop-rate``).

A branch is removed by making its drop-path module return zeros, so the
residual sum keeps only the identity; a block is removed when all its
branches are (blocks are found by :func:`cosub_mm.models.drop_path.
block_drop_paths`, which covers mmpretrain's ViT, DeiT3, Swin, ConvNeXt).
Writes ``submodel_accuracy.csv`` and ``submodel_accuracy.png`` (one curve
per checkpoint) to ``--out-dir``.

Usage:
    python tools/analysis_tools/submodel_accuracy.py \\
        --model cosub CONFIG CKPT --model baseline CONFIG2 CKPT2 \\
        --out-dir work_dirs/submodels [--num-test 2000] [--num-random 32]
"""
import argparse
import contextlib
import csv
import os
import os.path as osp
import random
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cosub_mm  # noqa: F401  (stack fixes first, then registration)
import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope
from mmengine.runner import Runner, load_checkpoint
from mmengine.utils import ProgressBar
from torch import Tensor, nn

from cosub_mm.models.drop_path import block_drop_paths

CSV_FIELDS = ('model', 'kind', 'k', 'trial', 'dropped', 'top1')


def _zeros(x: Tensor, *args, **kwargs) -> Tensor:
    return torch.zeros_like(x)


@contextlib.contextmanager
def dropped(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Make the given drop-path modules drop their branch for every image.

    Args:
        modules (Sequence[nn.Module]): Drop-path modules; each returns zeros
            (its residual branch contributes nothing) inside the context.
    """
    for module in modules:
        module.forward = _zeros  # an instance attribute shadows the method
    try:
        yield
    finally:
        for module in modules:
            del module.forward


def load_model(config: str, checkpoint: str,
               cfg_options: Optional[dict] = None) -> Tuple[nn.Module, Config]:
    """Build the classifier of ``config`` and load ``checkpoint`` into it."""
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    from mmpretrain.registry import MODELS
    model_cfg = cfg.model.copy()
    if 'data_preprocessor' in cfg:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg)
    load_checkpoint(model, checkpoint, map_location='cpu', strict=True,
                    logger='silent')
    return model.eval(), cfg


def load_batches(cfg: Config, num_test: Optional[int],
                 batch_size: int = 250) -> List[Tuple[Tensor, Tensor]]:
    """Preprocessed test batches ``(inputs, labels)`` of the config."""
    loader_cfg = cfg.test_dataloader.copy()
    loader_cfg.dataset = loader_cfg.dataset.copy()
    if num_test:
        loader_cfg.dataset['indices'] = num_test
    loader_cfg['batch_size'] = batch_size
    loader_cfg['num_workers'] = 0
    loader_cfg['persistent_workers'] = False
    return [(x, torch.cat([s.gt_label for s in samples]))
            for x, samples in _preprocessed(cfg, loader_cfg)]


def _preprocessed(cfg: Config, loader_cfg: dict):
    from mmpretrain.registry import MODELS
    pre_cfg = dict(type='ClsDataPreprocessor')
    pre_cfg.update(cfg.get('data_preprocessor', {}))
    pre_cfg.update(cfg.model.get('data_preprocessor', {}) or {})
    pre = MODELS.build(pre_cfg)
    for data in Runner.build_dataloader(loader_cfg, seed=0):
        data = pre(data, False)
        yield data['inputs'], data['data_samples']


@torch.no_grad()
def top1(model: nn.Module, batches: List[Tuple[Tensor, Tensor]]) -> float:
    """Top-1 accuracy (%) of ``model`` on the batches."""
    correct = total = 0
    for inputs, labels in batches:
        logits = model(inputs, mode='tensor')
        correct += (logits.argmax(dim=1) == labels).sum().item()
        total += labels.numel()
    return 100.0 * correct / total


def plan_submodels(branches: Dict[str, List[nn.Module]],
                   num_random: int, random_k_trials: int,
                   drop_rate: Optional[float],
                   seed: int) -> List[Tuple[str, int, int, List[str]]]:
    """The submodels to evaluate: ``(kind, k, trial, dropped branch names)``.

    Args:
        branches (dict): Block name to ``[(branch name, module), ...]``.
        num_random (int): Random submodels sampled at the training rates.
        random_k_trials (int): Random draws of k blocks, for 0 < k < L.
        drop_rate (float, optional): Replaces every branch's own rate.
        seed (int): Seed of the random draws.
    """
    rng = random.Random(seed)
    blocks = list(branches)
    num_blocks = len(blocks)

    def names(block_subset: Sequence[str]) -> List[str]:
        return [n for b in block_subset for n, _ in branches[b]]

    plan = []
    for k in range(num_blocks + 1):
        plan.append(('last_k', k, 0, names(blocks[num_blocks - k:])))
    for k in range(1, num_blocks):
        for trial in range(random_k_trials):
            subset = sorted(rng.sample(range(num_blocks), k))
            plan.append(('random_k', k, trial,
                         names([blocks[i] for i in subset])))
    for trial in range(num_random):
        drop = [
            n for b in blocks for n, m in branches[b]
            if rng.random() < (getattr(m, 'drop_prob', 0.0) if drop_rate is None
                               else drop_rate)
        ]
        plan.append(('random_submodel', len(drop), trial, drop))
    return plan


def named_branches(backbone: nn.Module) -> Dict[str, List[tuple]]:
    """Block name to its ``(drop-path module name, module)`` pairs."""
    by_id = {id(m): n for n, m in backbone.named_modules()}
    return {
        block: [(by_id[id(m)], m) for m in modules]
        for block, modules in block_drop_paths(backbone).items()
    }


def evaluate(label: str, config: str, checkpoint: str,
             args: argparse.Namespace) -> List[dict]:
    """Evaluate the submodels of one checkpoint; rows for the CSV."""
    model, cfg = load_model(config, checkpoint, args.cfg_options)
    branches = named_branches(model.backbone)
    if not branches:
        raise ValueError(f'{config}: the backbone has no drop-path module, '
                         'so it has no submodels to evaluate')
    modules = {n: m for pairs in branches.values() for n, m in pairs}
    batches = load_batches(cfg, args.num_test)
    plan = plan_submodels(branches, args.num_random, args.random_k_trials,
                          args.drop_rate, args.seed)
    print(f'{label}: {len(branches)} blocks, {len(modules)} drop-path '
          f'branches, {len(plan)} submodels on '
          f'{sum(len(y) for _, y in batches)} test images', flush=True)
    rows = []
    bar = ProgressBar(len(plan))
    for kind, k, trial, drop in plan:
        with dropped([modules[n] for n in drop]):
            acc = top1(model, batches)
        rows.append(dict(model=label, kind=kind, k=k, trial=trial,
                         dropped=';'.join(drop), top1=round(acc, 4)))
        bar.update()
    print(flush=True)
    return rows


def write_csv(rows: List[dict], path: str) -> None:
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: List[dict], path: str) -> None:
    """Top-1 vs blocks removed (left), random-submodel spread (right)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    labels = list(dict.fromkeys(r['model'] for r in rows))
    palette = plt.rcParams['axes.prop_cycle'].by_key()['color']
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for i, label in enumerate(labels):
        colour = palette[i % len(palette)]
        mine = [r for r in rows if r['model'] == label]
        last = sorted((r['k'], r['top1']) for r in mine
                      if r['kind'] == 'last_k')
        ax1.plot(*zip(*last), marker='o', color=colour,
                 label=f'{label}: last k removed')
        ks = sorted({r['k'] for r in mine if r['kind'] == 'random_k'})
        if ks:
            accs = [[r['top1'] for r in mine
                     if r['kind'] == 'random_k' and r['k'] == k] for k in ks]
            full = last[0][1]
            ks_all = [0] + ks + [last[-1][0]]
            means = [full] + [np.mean(a) for a in accs] + [last[-1][1]]
            errs = [0] + [np.std(a) for a in accs] + [0]
            ax1.errorbar(ks_all, means, yerr=errs, ls='--', marker='s',
                         ms=3, color=colour, capsize=2,
                         label=f'{label}: random k removed')
    from matplotlib.ticker import MaxNLocator
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.set_xlabel('residual blocks removed (k)')
    ax1.set_ylabel('test top-1 (%)')
    ax1.set_title('Removing blocks at test time')
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    data = [[r['top1'] for r in rows
             if r['model'] == label and r['kind'] == 'random_submodel']
            for label in labels]
    if any(data):
        ax2.boxplot(data, showmeans=True)
        ax2.set_xticks(range(1, len(labels) + 1), labels)
        for i, (label, accs) in enumerate(zip(labels, data), 1):
            full = [r['top1'] for r in rows if r['model'] == label
                    and r['kind'] == 'last_k' and r['k'] == 0][0]
            ax2.plot([i - 0.35, i + 0.35], [full, full], color='k', lw=1)
            ax2.scatter(np.full(len(accs), i) + np.linspace(-0.15, 0.15,
                                                            len(accs)),
                        accs, s=6, alpha=0.5,
                        color=palette[(i - 1) % len(palette)])
    ax2.set_ylabel('test top-1 (%)')
    ax2.set_title('Random submodels at the training drop rate\n'
                  '(black line: full network)', fontsize=10)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--model', nargs=3, action='append', required=True,
        metavar=('LABEL', 'CONFIG', 'CHECKPOINT'),
        help='a checkpoint to evaluate; repeat for several (one plot)')
    parser.add_argument('--out-dir', default='work_dirs/submodel_accuracy')
    parser.add_argument('--num-test', type=int, default=2000,
                        help='first N test images (0: all)')
    parser.add_argument('--num-random', type=int, default=32,
                        help='random submodels at the training drop rate')
    parser.add_argument('--random-k-trials', type=int, default=3)
    parser.add_argument('--drop-rate', type=float, default=None,
                        help='rate of the random submodels (default: each '
                        "branch's training rate)")
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='overrides for every config, K=V')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Tuple[str, str]:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    rows = []
    for label, config, checkpoint in args.model:
        for path, what in ((config, 'config'), (checkpoint, 'checkpoint')):
            if not osp.isfile(path):
                raise SystemExit(f'--model {label}: {what} {path} not found')
        rows += evaluate(label, config, checkpoint, args)
    os.makedirs(args.out_dir, exist_ok=True)
    csv_path = osp.join(args.out_dir, 'submodel_accuracy.csv')
    png_path = osp.join(args.out_dir, 'submodel_accuracy.png')
    write_csv(rows, csv_path)
    plot(rows, png_path)
    for label in dict.fromkeys(r['model'] for r in rows):
        mine = [r for r in rows if r['model'] == label]
        full = [r['top1'] for r in mine if r['kind'] == 'last_k'
                and r['k'] == 0][0]
        rand = [r['top1'] for r in mine if r['kind'] == 'random_submodel']
        msg = f'{label}: full network {full:.2f}'
        if rand:
            msg += (f', random submodels mean {sum(rand) / len(rand):.2f} '
                    f'(min {min(rand):.2f}, max {max(rand):.2f})')
        print(msg)
    print(f'csv: {csv_path}\nplot: {png_path}')
    return csv_path, png_path


if __name__ == '__main__':
    main()
