"""Small helpers shared by ``tools/train.py`` and ``tools/test.py``."""
import os.path as osp
from typing import Optional

from mmengine.config import Config

__all__ = ['DATALOADER_KEYS', 'fix_dataloaders', 'set_work_dir', 'scope_of']

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
