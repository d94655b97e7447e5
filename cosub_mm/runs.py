"""Run the repository's tools as subprocesses and read what a run logged.

One home for what ``tools/demo.py``, the studies under
``tools/analysis_tools/`` and the tests share: the environment of a tool
subprocess (this checkout importable, a fixed number of threads, unbuffered
output), running ``tools/train.py`` on a config with its log streamed to a
file, and reading mmengine's ``vis_data/scalars.json``.

Example:
    >>> from cosub_mm.runs import train_config, read_scalars
    >>> train_config('configs/demo/cosub_vit-6l-96d-p7_1xb256-adamw-700i_'
    ...              'fashion-mnist.py', 'work_dirs/x', ['--iters', '100'])
    >>> [r['accuracy/top1'] for r in read_scalars('work_dirs/x')
    ...  if 'accuracy/top1' in r]
"""
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

__all__ = [
    'REPO', 'tool_env', 'run_tool', 'train_config', 'read_scalars',
    'metric_history', 'last_checkpoint', 'format_options',
    'check_fashion_mnist'
]

#: The checkout this package was imported from (``tools/`` lives there).
REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


FMNIST_FILES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
                't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')


def check_fashion_mnist(root: str) -> None:
    """Exit with a clear error naming the fix when the idx files are missing.

    Args:
        root (str): The folder the configs read (``data/fashion_mnist``).
    """
    missing = [f for f in FMNIST_FILES if not osp.isfile(osp.join(root, f))]
    if missing:
        raise SystemExit(
            f'Fashion-MNIST is missing in {root} ({", ".join(missing)}).\n'
            'Fix: run `make setup` (it extracts the Debian package '
            'dataset-fashion-mnist into data/fashion_mnist); if the package '
            'is not installed: `sudo apt-get install dataset-fashion-mnist` '
            'then `make setup`. Nothing is downloaded.')


def tool_env(threads: Optional[int] = None, **extra: str) -> Dict[str, str]:
    """Environment of a tool subprocess.

    Args:
        threads (int, optional): torch/OpenMP threads of the subprocess;
            None keeps the caller's setting.
        **extra: More variables to set.

    Returns:
        dict: ``os.environ`` with this checkout first on ``PYTHONPATH`` and
        ``PYTHONUNBUFFERED=1`` (log lines reach a pipe as they happen).
    """
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
    env['PYTHONUNBUFFERED'] = '1'
    if threads is not None:
        env['OMP_NUM_THREADS'] = env['MKL_NUM_THREADS'] = str(threads)
    env.update(extra)
    return env


def run_tool(args: Sequence[str], env: Optional[Dict[str, str]] = None,
             timeout: Optional[float] = None,
             capture: bool = True) -> subprocess.CompletedProcess:
    """Run ``python <args>`` from the repository root.

    Args:
        args (Sequence[str]): The tool's path (relative to the root) and
            its arguments.
        env (dict, optional): Defaults to :func:`tool_env`.
        timeout (float, optional): Seconds before the tool is killed.
        capture (bool): Capture stdout/stderr (else they pass through).

    Returns:
        subprocess.CompletedProcess: The finished process; the caller
        checks ``returncode``.
    """
    return subprocess.run(
        [sys.executable] + list(args), cwd=REPO, env=env or tool_env(),
        capture_output=capture, text=True, timeout=timeout)


def format_options(options: Dict[str, object]) -> List[str]:
    """``--cfg-options`` values ``K=V`` from a dict."""
    return [f'{k}={v}' for k, v in options.items()]


def train_config(config: str,
                 work_dir: str,
                 extra_args: Sequence[str] = (),
                 threads: Optional[int] = None,
                 echo: Optional[Callable[[str], None]] = None,
                 log_file: Optional[str] = None) -> float:
    """Train ``config`` with ``tools/train.py`` in a subprocess.

    Args:
        config (str): Config path (relative to the root or absolute).
        work_dir (str): The run's work_dir.
        extra_args (Sequence[str]): More flags of ``tools/train.py``
            (``--iters``, ``--test``, ``--cfg-options ...``).
        threads (int, optional): Threads of the subprocess.
        echo (callable, optional): Called with each runner log line
            (iteration, validation and checkpoint lines).
        log_file (str, optional): Where the whole output goes; defaults to
            ``{work_dir}/train.log``.

    Returns:
        float: Wall time in seconds.

    Raises:
        RuntimeError: When training fails, with the log's tail and path.
    """
    os.makedirs(work_dir, exist_ok=True)
    log_file = log_file or osp.join(work_dir, 'train.log')
    cmd = [sys.executable, osp.join(REPO, 'tools', 'train.py'), config,
           '--work-dir', work_dir] + list(extra_args)
    start = time.time()
    with open(log_file, 'w') as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=tool_env(threads), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in proc.stdout:
            log.write(line)
            if echo is not None and ' - mmengine - ' in line and any(
                    t in line for t in ('(train)', '(val)', '(test)',
                                        'Saving')):
                echo(line.rstrip())
        rc = proc.wait()
    if rc != 0:
        with open(log_file) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(
            f'training {config} failed (exit {rc}); log {log_file}:\n{tail}')
    return time.time() - start


def read_scalars(work_dir: str) -> List[dict]:
    """The records of the newest run's ``vis_data/scalars.json``.

    Args:
        work_dir (str): A run's work_dir (mmengine writes one timestamped
            folder per launch).

    Raises:
        FileNotFoundError: When no run under ``work_dir`` logged scalars.
    """
    stamps = sorted(
        d for d in os.listdir(work_dir)
        if osp.isfile(osp.join(work_dir, d, 'vis_data', 'scalars.json')))
    if not stamps:
        raise FileNotFoundError(f'no vis_data/scalars.json under {work_dir}')
    with open(osp.join(work_dir, stamps[-1], 'vis_data',
                       'scalars.json')) as f:
        return [json.loads(line) for line in f if line.strip()]


def metric_history(records: List[dict], key: str) -> List[tuple]:
    """``(step, value)`` of every record that logged ``key``."""
    return [(r['step'], float(r[key])) for r in records if key in r]


def last_checkpoint(work_dir: str) -> str:
    """The path mmengine's ``last_checkpoint`` file names in ``work_dir``."""
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} is missing: the run saved no '
                                'checkpoint')
    with open(path) as f:
        return f.read().strip()
