"""Faults injected into the training subprocesses of the reliability tests.

Imported by ``configs/cosub_tiny_cls.py`` through ``custom_imports``; the
faults are switched on by environment variables, so the same config trains
normally when none is set:

- ``FAULT_PAUSE_AFTER_ITER=N``: after iteration N, touch ``FAULT_MARKER`` and
  sleep, so that the test can SIGKILL the run at a known point.
- ``FAULT_SLOW_SAVE_ITER=N``: the checkpoint of iteration N is written
  slowly: half of its bytes, then ``FAULT_MARKER`` is touched and the writer
  sleeps (a slow file system), so the test can SIGKILL it mid-save.
- ``FAULT_NAN_AT_ITER=N``: before iteration N the head's weights become NaN,
  so that the loss of iteration N is NaN.
- ``FAULT_COUNT_LOADS=FILE``: count the samples loaded (dataset
  ``__getitem__`` calls) and write ``{"iter": i, "loads": n}`` to FILE
  after the first training iteration this process runs (a resumed run:
  what it loaded to get there).
- ``FAULT_LOG_LOADS=FILE``: append one line (the dataset's ``data_prefix``
  and the index) to FILE per sample loaded, in whichever process loads it
  (data loader workers included).
"""
import json
import io
import os
import pathlib
import time

import torch
from mmengine.hooks import Hook

from cosub_mm.registry import HOOKS

_marker = os.environ.get('FAULT_MARKER', '')


def _env_int(name: str) -> int:
    return int(os.environ.get(name, '0'))


@HOOKS.register_module()
class FaultInjectionHook(Hook):
    """Pause after an iteration, or poison the head before one."""

    priority = 'LOWEST'  # after CheckpointHook has saved the iteration

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if runner.iter + 1 == _env_int('FAULT_NAN_AT_ITER'):
            model = runner.model.module if hasattr(
                runner.model, 'module') else runner.model
            with torch.no_grad():
                for p in model.head.parameters():
                    p.fill_(float('nan'))

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        count_file = os.environ.get('FAULT_COUNT_LOADS')
        if count_file and not os.path.exists(count_file):
            with open(count_file, 'w') as f:
                json.dump(dict(iter=runner.iter + 1, loads=_loads[0]), f)
        if runner.iter + 1 == _env_int('FAULT_PAUSE_AFTER_ITER'):
            pathlib.Path(_marker).touch()
            time.sleep(300)


_loads = [0]


def _counting(getitem):

    def __getitem__(self, idx):
        _loads[0] += 1
        return getitem(self, idx)

    return __getitem__


if os.environ.get('FAULT_COUNT_LOADS'):
    from mmengine.dataset import BaseDataset
    BaseDataset.__getitem__ = _counting(BaseDataset.__getitem__)


def _logging(getitem, path: str):

    def __getitem__(self, idx):
        with open(path, 'a') as f:  # one short append per load: atomic
            f.write(f'{self.data_prefix} {int(idx)}\n')
        return getitem(self, idx)

    return __getitem__


if os.environ.get('FAULT_LOG_LOADS'):
    from mmengine.dataset import BaseDataset
    BaseDataset.__getitem__ = _logging(BaseDataset.__getitem__,
                                       os.environ['FAULT_LOG_LOADS'])

_torch_save = torch.save


def _slow_save(obj, f, *args, **kwargs):
    meta = obj.get('meta', {}) if isinstance(obj, dict) else {}
    if meta.get('iter') != _env_int('FAULT_SLOW_SAVE_ITER') or isinstance(
            f, (str, os.PathLike)):
        return _torch_save(obj, f, *args, **kwargs)
    buffer = io.BytesIO()
    _torch_save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    f.write(data[:len(data) // 2])
    f.flush()
    pathlib.Path(_marker).touch()
    time.sleep(300)
    f.write(data[len(data) // 2:])


if _env_int('FAULT_SLOW_SAVE_ITER'):
    torch.save = _slow_save
