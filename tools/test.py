"""Evaluate a checkpoint with an mmpretrain- or mmseg-scoped config.

The checkpoint is read with weights-only unpickling (see cosub_mm.fileio):
a file whose pickle would run code is refused.

Usage:
    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--show-dir DIR] [--tta] [--cfg-options K=V ...]
        [--launcher {none,pytorch,slurm,mpi}]
"""
import argparse
import os
from copy import deepcopy

import cosub_mm  # noqa: F401  (stack fixes first, then registration)
import mmengine
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.evaluator import DumpResults
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from cosub_mm.stack.distributed import finish_distributed_run
from cosub_mm.utils import (check_checkpoint_matches, fix_dataloaders,
                            scope_of, set_work_dir)


def parse_args() -> argparse.Namespace:
    """Parse mmpretrain's and mmseg's test flags."""
    parser = argparse.ArgumentParser(description='Test a cosub_mm model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save metrics')
    parser.add_argument(
        '--out',
        help='classification: a .pkl/.json file for predictions (or metrics '
        'with --out-item metrics); segmentation: a folder for the predicted '
        'label maps')
    parser.add_argument(
        '--out-item', choices=['metrics', 'pred'], default='pred')
    parser.add_argument(
        '--show-dir', help='folder where prediction overlays are saved')
    parser.add_argument(
        '--tta', action='store_true', help='enable test-time augmentation')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. test_dataloader.batch_size=1')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def _enable_tta_cls(cfg: Config) -> None:
    if 'tta_model' not in cfg:
        cfg.tta_model = dict(type='mmpretrain.AverageClsScoreTTA')
    if 'tta_pipeline' not in cfg:
        test_pipeline = cfg.test_dataloader.dataset.pipeline
        cfg.tta_pipeline = deepcopy(test_pipeline)
        cfg.tta_pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[[
                dict(type='RandomFlip', prob=1.),
                dict(type='RandomFlip', prob=0.)
            ], [test_pipeline[-1]]])
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def _enable_tta_seg(cfg: Config) -> None:
    for key in ('tta_model', 'tta_pipeline'):
        if key not in cfg:
            raise ValueError(f'--tta needs the field {key} in the config')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def _enable_show(cfg: Config, show_dir: str, scope: str) -> None:
    hooks = cfg.get('default_hooks', {})
    if 'visualization' not in hooks:
        raise ValueError('--show-dir needs default_hooks.visualization in '
                         'the config')
    if scope == 'mmseg':
        hooks.visualization.draw = True
        hooks.visualization.interval = 1
        cfg.visualizer.save_dir = show_dir
    else:
        hooks.visualization.enable = True
        hooks.visualization.out_dir = show_dir
        hooks.visualization.interval = 1


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Merge the command-line flags into the config."""
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    scope = scope_of(cfg)
    set_work_dir(cfg, args.config, args.work_dir)
    cfg.launcher = args.launcher
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.show_dir:
        _enable_show(cfg, args.show_dir, scope)
    if args.tta:
        (_enable_tta_seg if scope == 'mmseg' else _enable_tta_cls)(cfg)
    if args.out and scope == 'mmseg':
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    fix_dataloaders(cfg)
    return cfg


def main() -> None:
    """Build the runner, load the checkpoint and evaluate."""
    args = parse_args()
    cfg = merge_args(Config.fromfile(args.config), args)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else \
        Runner.from_cfg(cfg)
    # mmengine only warns about mismatched keys; refuse them instead.
    check_checkpoint_matches(runner.model, args.checkpoint)
    cls_out = args.out and scope_of(cfg) == 'mmpretrain'
    if cls_out and args.out_item == 'pred':
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    metrics = runner.test()
    if cls_out and args.out_item == 'metrics':
        mmengine.dump(metrics, args.out)
    finish_distributed_run()


if __name__ == '__main__':
    main()
