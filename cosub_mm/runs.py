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
import re
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

from cosub_mm.fileio import atomic_write_text
from cosub_mm.study import machine_load

__all__ = [
    'REPO', 'tool_env', 'run_tool', 'train_config', 'train_in_pieces',
    'read_scalars', 'checkpoint_step', 'metric_history', 'last_checkpoint',
    'format_options',
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


def _stamps(work_dir: str) -> List[str]:
    """The timestamped folders (one per launch) that logged scalars."""
    if not osp.isdir(work_dir):
        return []
    return sorted(
        d for d in os.listdir(work_dir)
        if osp.isfile(osp.join(work_dir, d, 'vis_data', 'scalars.json')))


def _launches(work_dir: str) -> List[str]:
    """mmengine's timestamped folders, one per launch."""
    return sorted(d for d in os.listdir(work_dir)
                  if re.fullmatch(r'\d{8}_\d{6}', d)
                  and osp.isdir(osp.join(work_dir, d)))


def _scalars_of(work_dir: str, stamp: str) -> List[dict]:
    path = osp.join(work_dir, stamp, 'vis_data', 'scalars.json')
    if not osp.isfile(path):  # a launch that stopped before it logged
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_scalars(work_dir: str) -> List[dict]:
    """The records of the newest run's ``vis_data/scalars.json``.

    Args:
        work_dir (str): A run's work_dir (mmengine writes one timestamped
            folder per launch).

    Raises:
        FileNotFoundError: When no run under ``work_dir`` logged scalars.
    """
    stamps = _stamps(work_dir)
    if not stamps:
        raise FileNotFoundError(f'no vis_data/scalars.json under {work_dir}')
    return _scalars_of(work_dir, stamps[-1])


PIECES = 'pieces.json'


def checkpoint_step(path: str) -> int:
    """The iteration or epoch of an mmengine checkpoint (``iter_600.pth``).

    Raises:
        ValueError: When the file name carries no step.
    """
    match = re.search(r'(?:iter|epoch)_(\d+)\.pth$', path)
    if match is None:
        raise ValueError(f'{path}: not an iter_N.pth or epoch_N.pth '
                         'checkpoint')
    return int(match.group(1))


def _load_pieces(work_dir: str, key: str) -> List[dict]:
    """The pieces of the run in ``work_dir`` that the next call continues:
    empty unless every piece of a run started with ``key`` ended at a
    time limit whose checkpoint is still the last one."""
    path = osp.join(work_dir, PIECES)
    if not osp.isfile(path):
        return []
    try:
        with open(path) as f:
            state = json.load(f)
        pieces = state['pieces']
        ok = state['key'] == key and pieces and all(
            'wall_s' in p for p in pieces)
        ok = ok and last_checkpoint(work_dir) == pieces[-1]['checkpoint']
    except (OSError, ValueError, KeyError, TypeError):
        # unreadable, killed mid-piece or checkpoint gone: start afresh
        return []
    return pieces if ok else []


def train_in_pieces(config: str,
                    work_dir: str,
                    length: int,
                    key: str,
                    extra_args: Sequence[str] = (),
                    hours: Optional[float] = None,
                    threads: Optional[int] = None,
                    resume_points: Optional[int] = 32) -> Optional[dict]:
    """Train an iteration-based ``config`` to ``length``, a piece per call.

    A piece ends at the run's end, or at its first checkpoint after
    ``hours`` (``tools/train.py --time-limit``, :class:`TimeLimitHook`);
    the next call continues the run from that checkpoint (``--resume``) if
    it was started with the same ``key`` (e.g. its config hash). A run
    killed mid-piece, or of another key, starts afresh: its checkpoint may
    be one whose RNG states do not continue it exactly. For an exact
    continuation the config needs :class:`ExactResumeHook`. The pieces are
    kept in ``{work_dir}/pieces.json``; piece ``i`` logs to ``train.log``
    (``train.{i}.log`` after the first).

    Args:
        config (str): Config path.
        work_dir (str): The run's work_dir.
        length (int): The run's last iteration.
        key (str): What the run is; a run of another key is not continued.
        extra_args (Sequence[str]): More flags of ``tools/train.py``.
        hours (float, optional): Time limit of this piece.
        threads (int, optional): Threads of the subprocess.
        resume_points (int, optional): Checkpoints of the run, hence the
            places a piece can end (the interval is ``length //
            resume_points``, at least 1); None keeps the config's.

    Returns:
        dict or None: None while the run is unfinished; at its end
        ``wall_s`` (the pieces' sum), ``pieces`` (``from_step``,
        ``to_step``, ``wall_s``, ``load_start``, ``load_end`` each) and
        ``scalars``, the pieces' ``scalars.json`` records joined at their
        checkpoints.
    """
    pieces = _load_pieces(work_dir, key)
    args = list(extra_args)
    if resume_points:
        # a second --cfg-options merges into the first
        args += ['--cfg-options', 'default_hooks.checkpoint.interval='
                 f'{max(1, length // resume_points)}']
    start = pieces[-1]['to_step'] if pieces else 0
    if pieces:
        args += ['--resume', pieces[-1]['checkpoint']]
    if hours is not None:
        args += ['--time-limit', str(max(0.0, hours))]
    os.makedirs(work_dir, exist_ok=True)
    before = set(_launches(work_dir))
    piece = dict(from_step=start, load_start=machine_load())
    state_path = osp.join(work_dir, PIECES)
    atomic_write_text(json.dumps(dict(key=key, pieces=pieces + [piece]),
                                 indent=1), state_path)
    log = 'train.log' if not pieces else f'train.{len(pieces)}.log'
    piece['wall_s'] = round(train_config(
        config, work_dir, args, threads=threads,
        log_file=osp.join(work_dir, log)), 1)
    new = sorted(set(_launches(work_dir)) - before)
    if not new:
        raise RuntimeError(f'train_in_pieces: the piece left no timestamped '
                           f'log folder under {work_dir}')
    piece.update(stamp=new[-1], checkpoint=last_checkpoint(work_dir),
                 load_end=machine_load())
    if not osp.basename(piece['checkpoint']).startswith('iter_'):
        # the logs are joined at iterations
        raise ValueError(f"train_in_pieces: {config} saved "
                         f"{piece['checkpoint']}; only iteration-based "
                         'runs (iter_N.pth checkpoints) are trained in pieces')
    piece['to_step'] = checkpoint_step(piece['checkpoint'])
    pieces.append(piece)
    atomic_write_text(json.dumps(dict(key=key, pieces=pieces), indent=1),
                      state_path)
    if piece['to_step'] < length:
        return None
    scalars = []
    for p in pieces:
        scalars += [r for r in _scalars_of(work_dir, p['stamp'])
                    if p['from_step'] < r.get('step', 0) <= p['to_step']]
    return dict(
        wall_s=round(sum(p['wall_s'] for p in pieces), 1), scalars=scalars,
        pieces=[{k: p[k] for k in ('from_step', 'to_step', 'wall_s',
                                   'load_start', 'load_end')}
                for p in pieces])


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
