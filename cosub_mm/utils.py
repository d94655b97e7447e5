"""Small helpers shared by ``tools/train.py`` and ``tools/test.py``."""
import os.path as osp
from typing import Any, List, Optional

from mmengine.config import Config
from torch import nn

__all__ = [
    'DATALOADER_KEYS', 'fix_dataloaders', 'set_work_dir', 'scope_of',
    'check_checkpoint_matches', 'scale_schedule', 'log_metrics_by_iter'
]

DATALOADER_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def fix_dataloaders(cfg: Config) -> None:
    """Turn ``persistent_workers`` off where ``num_workers`` is 0.

    torch's DataLoader raises ``ValueError: persistent_workers option needs
    num_workers > 0`` otherwise; mmpretrain's own ``tools/train.py`` forces
    ``persistent_workers=True`` and so crashes on such configs.
    """
    for key in DATALOADER_KEYS:
        loader = cfg.get(key)
        if loader and loader.get('num_workers', 0) == 0:
            loader['persistent_workers'] = False


def set_work_dir(cfg: Config, config_path: str,
                 work_dir: Optional[str]) -> None:
    """Set ``cfg.work_dir``: the flag, else the config's, else work_dirs/."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        name = osp.splitext(osp.basename(config_path))[0]
        cfg.work_dir = osp.join('./work_dirs', name)


def scope_of(cfg: Config) -> str:
    """Return the config's ``default_scope`` (``mmpretrain`` or ``mmseg``)."""
    scope = cfg.get('default_scope')
    if scope not in ('mmpretrain', 'mmseg'):
        raise ValueError(
            f"config field default_scope must be 'mmpretrain' or 'mmseg', "
            f'got {scope!r}')
    return scope


def _is_by_epoch(cfg: Config) -> bool:
    train_cfg = cfg.get('train_cfg') or {}
    if 'by_epoch' in train_cfg:
        return bool(train_cfg['by_epoch'])
    return train_cfg.get('type', 'EpochBasedTrainLoop') != 'IterBasedTrainLoop'


def scale_schedule(cfg: Config, length: int) -> float:
    """Give the run ``length`` epochs or iterations, schedules scaled along.

    The unit is the training loop's (``train_cfg.max_epochs`` or
    ``max_iters``). Every ``param_scheduler`` bound and the ``begin``/``end``
    of the ``custom_hooks`` counted in that unit are multiplied by
    ``length / old_length`` and rounded, so a warmup stays the same
    fraction of the run (at least one step): shortening a run never leaves
    it inside its warmup. Bounds counted in the other unit are left as they are.

    Args:
        cfg (Config): The config, changed in place.
        length (int): The new number of epochs or iterations (> 0).

    Returns:
        float: The factor applied.

    Raises:
        ValueError: When the config has no training loop length or
            ``length`` is not positive.
    """
    by_epoch = _is_by_epoch(cfg)
    key = 'max_epochs' if by_epoch else 'max_iters'
    old = (cfg.get('train_cfg') or {}).get(key)
    if not old:
        raise ValueError(f'scale_schedule: the config has no train_cfg.{key} '
                         'to scale')
    if int(length) <= 0:
        raise ValueError(f'scale_schedule: the run length must be > 0, got '
                         f'{length}')
    factor = int(length) / old

    def scale(item: dict, default_by_epoch: bool) -> None:
        if bool(item.get('by_epoch', default_by_epoch)) != by_epoch:
            return
        for bound in ('begin', 'end'):
            value = item.get(bound)
            if isinstance(value, (int, float)):
                # a bound past 0 stays past 0: a short run keeps its warmup
                item[bound] = max(int(value > 0), int(round(value * factor)))

    schedulers = cfg.get('param_scheduler') or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    for item in schedulers:
        scale(item, True)  # mmengine schedulers default to by_epoch=True
    for item in cfg.get('custom_hooks') or []:
        scale(item, False)
    cfg.train_cfg[key] = int(length)
    if cfg.train_cfg.get('val_interval', 0) > length:
        cfg.train_cfg['val_interval'] = int(length)
    return factor


def log_metrics_by_iter(cfg: Config) -> None:
    """Log validation metrics at their iteration in iteration-based runs.

    mmengine's ``LoggerHook`` defaults to ``log_metric_by_epoch=True``,
    which writes every validation of an iteration-based run at step 0 of
    ``scalars.json`` (mmseg's configs set it off for this reason). A config
    that sets the key itself is left alone.
    """
    logger = (cfg.get('default_hooks') or {}).get('logger')
    if logger is not None and not _is_by_epoch(cfg):
        logger.setdefault('log_metric_by_epoch', False)


def _listing(title: str, keys: List[str], limit: int = 10) -> str:
    if not keys:
        return ''
    more = f' ... and {len(keys) - limit} more' if len(keys) > limit else ''
    return f'\n  {title} ({len(keys)}): {", ".join(keys[:limit])}{more}'


def check_checkpoint_matches(model: nn.Module, filename: str) -> Any:
    """Refuse a checkpoint whose weights do not fit ``model``.

    mmengine loads ``load_from`` non-strictly and only logs a warning, so a
    checkpoint of another architecture would be evaluated with random
    weights. The checkpoint is read weights-only.

    Args:
        model (nn.Module): The model to evaluate (a wrapper's ``module`` is
            used).
        filename (str): Path or URL of the checkpoint.

    Returns:
        The loaded checkpoint, for callers that read more of it (its meta).

    Raises:
        ValueError: Naming the file and listing the missing keys, the
            unexpected keys and the keys whose shapes differ, when any key
            of the model is missing or has another shape.
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    # mmengine's loaders: weights-only for files and URLs (cosub_mm.stack)
    model = getattr(model, 'module', model)
    checkpoint = CheckpointLoader.load_checkpoint(filename, map_location='cpu')
    state = checkpoint.get('state_dict', checkpoint) \
        if isinstance(checkpoint, dict) else {}
    state = {(k[7:] if k.startswith('module.') else k): v
             for k, v in state.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f'{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}'
        for k in own if k in state and hasattr(state[k], 'shape')
        and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or shapes:
        raise ValueError(
            f'Checkpoint {filename} does not match the model '
            f'{type(model).__name__}: it looks like another architecture.' +
            _listing('missing keys', missing) +
            _listing('unexpected keys', unexpected) +
            _listing('shape mismatches (checkpoint vs model)', shapes))
    return checkpoint
