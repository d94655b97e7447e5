"""Shared pieces of the reliability tests: training subprocesses, faults."""
import os
import os.path as osp
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

import torch

from conftest import REPO, run_tool, tool_env

HERE = osp.dirname(osp.abspath(__file__))
COSUB_CFG = osp.join(HERE, 'configs', 'cosub_tiny_cls.py')


def fault_env(**faults: str) -> dict:
    """tool_env with this folder importable (for ``reliability_faults``)."""
    env = tool_env(**faults)
    env['PYTHONPATH'] = HERE + os.pathsep + env['PYTHONPATH']
    return env


def train_args(work_dir: str, data_root: str,
               extra: Optional[List[str]] = None) -> List[str]:
    """Arguments of ``tools/train.py`` for the tiny cosub config."""
    return ['tools/train.py', COSUB_CFG, '--work-dir', work_dir,
            '--cfg-options', f'train_dataloader.dataset.data_root={data_root}',
            f'val_dataloader.dataset.data_root={data_root}',
            f'test_dataloader.dataset.data_root={data_root}'] + (extra or [])


def train(work_dir: str, data_root: str, resume: bool = False,
          check: bool = True, **faults: str) -> subprocess.CompletedProcess:
    """Run ``tools/train.py`` on the tiny cosub config to completion."""
    args = train_args(work_dir, data_root)
    if resume:
        args.insert(2, '--resume')
    return run_tool(args, env=fault_env(**faults), check=check)


def train_and_kill(work_dir: str, data_root: str, marker: str,
                   timeout: float = 120, **faults: str) -> int:
    """Start training, SIGKILL it once the fault touches ``marker``.

    Returns:
        int: The exit status (``-SIGKILL`` when killed).
    """
    env = fault_env(FAULT_MARKER=marker, **faults)
    # a file, not a pipe: a full pipe would block the child before the fault
    with tempfile.TemporaryFile('w+') as log:
        proc = subprocess.Popen(
            [sys.executable] + train_args(work_dir, data_root), cwd=REPO,
            env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + timeout
        while not osp.exists(marker) and proc.poll() is None:
            if time.time() > deadline:
                proc.kill()
                proc.wait()
                raise AssertionError('the fault never triggered')
            time.sleep(0.05)
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError('training ended before the fault:\n' +
                                 log.read()[-4000:])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc.returncode


def weights(path: str) -> Dict[str, torch.Tensor]:
    """The ``state_dict`` of a checkpoint, read weights-only."""
    from cosub_mm.fileio import safe_load
    return safe_load(path)['state_dict']


def assert_bitwise_equal(a: Dict[str, torch.Tensor],
                         b: Dict[str, torch.Tensor]) -> None:
    """Same keys, and tensors equal bit for bit."""
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f'{k} differs'
