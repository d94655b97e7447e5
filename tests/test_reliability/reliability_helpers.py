"""Shared pieces of the reliability tests: training subprocesses, faults."""
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from typing import Dict, List, Optional, Tuple

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
               extra: Optional[List[str]] = None,
               config: str = COSUB_CFG) -> List[str]:
    """Arguments of ``tools/train.py`` for the tiny cosub config."""
    return ['tools/train.py', config, '--work-dir', work_dir,
            '--cfg-options', f'train_dataloader.dataset.data_root={data_root}',
            f'val_dataloader.dataset.data_root={data_root}',
            f'test_dataloader.dataset.data_root={data_root}'] + (extra or [])


def train(work_dir: str, data_root: str, resume: bool = False,
          check: bool = True, extra: Optional[List[str]] = None,
          config: str = COSUB_CFG,
          **faults: str) -> subprocess.CompletedProcess:
    """Run ``tools/train.py`` on the tiny cosub config (or ``config``) to
    completion (``extra``: more ``--cfg-options``)."""
    args = train_args(work_dir, data_root, extra, config)
    if resume:
        args.insert(2, '--resume')
    return run_tool(args, env=fault_env(**faults), check=check)


def train_and_kill(work_dir: str, data_root: str, marker: str,
                   timeout: float = 120, extra: Optional[List[str]] = None,
                   config: str = COSUB_CFG, **faults: str) -> int:
    """Start training, SIGKILL it once the fault touches ``marker``.

    Returns:
        int: The exit status (``-SIGKILL`` when killed).
    """
    env = fault_env(FAULT_MARKER=marker, **faults)
    # a file, not a pipe: a full pipe would block the child before the fault
    with tempfile.TemporaryFile('w+') as log:
        proc = subprocess.Popen(
            [sys.executable] + train_args(work_dir, data_root, extra,
                                          config),
            cwd=REPO,
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


# Run in a fresh interpreter: no site processing (so no editable install of
# cosub_mm), torch's site-packages appended by hand, mmengine and friends
# blocked. Prints what the checkpoint holds; saves its state_dict to OUT.
_LOAD_ANYWHERE = r"""
import json, sys
sys.path.append(SITE)
try:
    import cosub_mm
except ImportError:
    pass
else:
    raise SystemExit('cosub_mm is importable here: not a clean process')
BLOCKED = ('cosub_mm', 'mmengine', 'mmcv', 'mmpretrain', 'mmseg')
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import torch
checkpoint = torch.load(PATH)  # torch's default since 2.6: weights-only
assert torch.load(PATH, weights_only=True).keys() == checkpoint.keys()
torch.save(checkpoint['state_dict'], OUT)
loaded = sorted({m.split('.')[0] for m in sys.modules} & set(BLOCKED))
print(json.dumps(dict(
    keys=sorted(checkpoint), meta=sorted(checkpoint['meta']),
    rng_state=sorted(checkpoint['meta'].get('rng_state', {})),
    hub=sorted(checkpoint['message_hub']['log_scalars']),
    modules=loaded)))
"""


def load_anywhere(path: str,
                  out: str) -> Tuple[Dict[str, torch.Tensor], dict]:
    """Load a checkpoint with plain ``torch.load`` in a process that cannot
    import cosub_mm (asserted there) nor mmengine (blocked).

    Returns:
        tuple: The state_dict that process read, and a summary of the
        checkpoint (top-level keys, meta keys, RNG states, message hub
        scalars, and which of the blocked packages got imported: none).
    """
    site = sysconfig.get_paths()['purelib']
    code = (f'SITE, PATH, OUT = {site!r}, {path!r}, {out!r}\n' +
            _LOAD_ANYWHERE)
    proc = subprocess.run(
        [sys.executable, '-I', '-S', '-c', code], cwd=osp.dirname(out),
        env={'PATH': os.environ.get('PATH', ''), 'OMP_NUM_THREADS': '1'},
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return torch.load(out, weights_only=True), summary


def snapshot(folder: str) -> Dict[str, Tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and modification time."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = osp.join(root, name)
            with open(path, 'rb') as f:
                files[osp.relpath(path, folder)] = (
                    f.read(), os.stat(path).st_mtime_ns)
    return files


def assert_untouched(before: Dict[str, Tuple[bytes, int]],
                     folder: str) -> None:
    """Every file of ``before`` is still there, not even rewritten (same
    bytes, same modification time), and no checkpoint or pointer was added.
    (A start writes a new timestamped log folder: allowed.)"""
    after = snapshot(folder)
    for name, (data, mtime) in before.items():
        assert name in after, f'{name} was removed'
        assert after[name][0] == data, f'{name} was changed'
        assert after[name][1] == mtime, f'{name} was rewritten'
    added = [n for n in after if n not in before and (
        n.endswith('.pth') or osp.basename(n) == 'last_checkpoint')]
    assert not added, f'written: {added}'
