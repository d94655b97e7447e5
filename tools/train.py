"""Train a model with an mmpretrain- or mmseg-scoped config.

Usage:
    python tools/train.py CONFIG [--work-dir DIR] [--resume [auto|PATH]]
        [--resume-unsafe] [--amp [--amp-dtype {fp16,bf16}]] [--auto-scale-lr]
        [--no-validate] [--length N] [--time-limit HOURS] [--test]
        [--cfg-options K=V ...] [--launcher {none,pytorch,slurm,mpi}]
"""
import argparse
import json
import os
import os.path as osp
from typing import Optional

import cosub_mm  # noqa: F401  (stack fixes first, then registration)
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from cosub_mm.engine.hooks import TimeLimitHook
from cosub_mm.fileio import atomic_write_text
from cosub_mm.stack.distributed import finish_distributed_run
from cosub_mm.utils import (fix_dataloaders, log_metrics_by_iter,
                            scale_schedule, scope_of, set_work_dir)

# --amp-dtype -> (AmpOptimWrapper dtype, default loss_scale). bf16 has fp32's
# exponent range, so its gradients need no scaling (a constant scale of 1).
AMP_DTYPES = {'fp16': ('float16', 'dynamic'), 'bf16': ('bfloat16', 1.0)}


def parse_args() -> argparse.Namespace:
    """Parse mmpretrain's training flags."""
    parser = argparse.ArgumentParser(description='Train a cosub_mm model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or from the latest one in '
        'the work_dir when no path is given; weights-only, like every load')
    parser.add_argument(
        '--resume-unsafe',
        action='store_true',
        help='with --resume: fully unpickle the resume file (the config key '
        'resume_unsafe = True does the same), for a trusted checkpoint '
        'written by another tool; a crafted file would run code')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='automatic mixed precision (mmengine AmpOptimWrapper; GPU '
        'only): fp16 with dynamic loss scaling, as the DeiT III / cosub '
        'authors trained, unless --amp-dtype bf16')
    parser.add_argument(
        '--amp-dtype',
        choices=sorted(AMP_DTYPES),
        help='autocast dtype of --amp (implies --amp): fp16 (default) or '
        'bf16 (Ampere or newer; no loss scaling needed)')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='do not evaluate checkpoints during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual batch size')
    parser.add_argument(
        '--length',
        type=int,
        help='train for N epochs or iterations (the config\'s unit), with '
        'every scheduler bound scaled along (warmup stays a fraction)')
    parser.add_argument(
        '--time-limit',
        type=float,
        metavar='HOURS',
        help='end the run at its first checkpoint after HOURS (of an '
        'iteration that does not validate); --resume continues it '
        '(cosub_mm.TimeLimitHook)')
    parser.add_argument(
        '--test',
        action='store_true',
        help='evaluate the final model on the test set once after training '
        'and write {work_dir}/test_metrics.json')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. train_cfg.max_iters=10')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Merge the command-line flags into the config."""
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.length is not None:
        scale_schedule(cfg, args.length)
    scope_of(cfg)
    set_work_dir(cfg, args.config, args.work_dir)
    cfg.launcher = args.launcher

    if args.amp or args.amp_dtype:
        enable_amp(cfg, args.amp_dtype)

    if args.time_limit is not None:
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
            dict(type='cosub_mm.TimeLimitHook', hours=args.time_limit)]

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    if args.resume_unsafe:
        if not cfg.get('resume', False):
            raise ValueError('--resume-unsafe applies to a resume only: '
                             'add --resume [auto|PATH]')
        cfg.resume_unsafe = True

    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in \
                cfg.auto_scale_lr:
            raise ValueError(
                '--auto-scale-lr needs auto_scale_lr.base_batch_size in the '
                f'config {args.config}')
        cfg.auto_scale_lr.enable = True

    fix_dataloaders(cfg)
    log_metrics_by_iter(cfg)
    return cfg


def enable_amp(cfg: Config, amp_dtype: Optional[str] = None) -> None:
    """Train with mmengine's ``AmpOptimWrapper`` (``--amp``).

    Args:
        cfg (Config): The config; its ``optim_wrapper`` is changed in place.
        amp_dtype (str, optional): ``'fp16'`` or ``'bf16'``. None keeps the
            dtype of a config that already uses ``AmpOptimWrapper`` and
            means fp16 otherwise.
    """
    wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if wrapper not in ('OptimWrapper', 'AmpOptimWrapper'):
        raise ValueError(
            f'--amp needs optim_wrapper.type=OptimWrapper, got {wrapper}')
    if wrapper == 'AmpOptimWrapper' and amp_dtype is None:
        print('AMP is already enabled in the config.')
        return
    dtype, loss_scale = AMP_DTYPES[amp_dtype or 'fp16']
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.dtype = dtype
    cfg.optim_wrapper.setdefault('loss_scale', loss_scale)


def main() -> None:
    """Build the runner from the config and train."""
    args = parse_args()
    cfg = merge_args(Config.fromfile(args.config), args)
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    runner.train()
    if any(getattr(h, 'stopped', False) for h in runner.hooks
           if isinstance(h, TimeLimitHook)):
        # a piece of the run: testing waits for its end
        finish_distributed_run()
        return
    if args.test:
        metrics = runner.test()
        if runner.rank == 0:
            atomic_write_text(
                json.dumps({k: float(v) for k, v in metrics.items()},
                           indent=1),
                osp.join(cfg.work_dir, 'test_metrics.json'))
    finish_distributed_run()


if __name__ == '__main__':
    main()
