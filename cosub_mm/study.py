"""What the studies under ``tools/analysis_tools/`` share: run records,
stale detection, paired statistics and a pool that trains what is missing.

A study is a set of runs, each named by a *spec* (a dict of what differs
between runs). A finished run writes one small JSON *record* under
``docs/results/runs/<regime>/<name>.json`` holding its spec, the hash of the
config the code resolved for it, its metrics and how the machine was loaded;
the study's results are generated from the records only, so it can run in
pieces on different days and machines. A record whose hash no longer matches
what the current code resolves for its spec is *stale*: reported, never
mixed in.

Example:
    >>> iv = paired_interval([80.1, 80.9, 81.4], [79.0, 80.5, 80.3])
    >>> round(iv['mean'], 2), iv['n']
    (0.87, 3)
"""
import fcntl
import hashlib
import json
import os
import os.path as osp
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import (Callable, Dict, Iterable, Iterator, List, Optional,
                    Sequence, Tuple)

import numpy as np

__all__ = [
    'ARCHIVE', 'paired_interval', 'mean_std', 'interval_text',
    'machine_load', 'locked', 'resolved_hash', 'write_record', 'load_records',
    'split_stale', 'archived', 'run_pool', 'verdict'
]

#: Records of an earlier protocol move under ``<records>/archive/<name>/``
#: (with a README saying what they held) rather than being deleted or
#: mixed in.
ARCHIVE = 'archive'

# ----------------------------------------------------------- statistics ---
def paired_interval(a: Sequence[float], b: Sequence[float],
                    confidence: float = 0.95) -> dict:
    """Mean of ``a - b`` over pairs with a t-distribution interval.

    Args:
        a, b (Sequence[float]): Paired values (same seed at one index).
        confidence (float): Coverage of the interval.

    Returns:
        dict: ``n``, ``mean``, ``std`` (ddof 1), ``low``, ``high`` (None
        for fewer than two pairs).
    """
    from scipy import stats
    d = np.asarray(a, float) - np.asarray(b, float)
    if d.size == 0:
        raise ValueError('paired_interval: no pairs')
    out = dict(n=int(d.size), mean=float(d.mean()), std=None, low=None,
               high=None)
    if d.size > 1:
        std = float(d.std(ddof=1))
        half = float(stats.t.ppf(0.5 + confidence / 2, d.size - 1)) * \
            std / np.sqrt(d.size)
        out.update(std=std, low=out['mean'] - half, high=out['mean'] + half)
    return out


def mean_std(values: Sequence[float]) -> str:
    """``mean ± std`` (ddof 1) of values, two decimals; one value has no
    std (``± -``): a single seed says nothing of the spread."""
    values = np.asarray(values, float)
    if values.size < 2:
        return f'{values.mean():.2f} ± -'
    return f'{values.mean():.2f} ± {values.std(ddof=1):.2f}'


def interval_text(iv: dict) -> str:
    """``+0.87 [+0.10, +1.64]``, or the mean alone for one pair."""
    if iv['low'] is None:
        return f"{iv['mean']:+.2f} (1 pair, no interval)"
    return f"{iv['mean']:+.2f} [{iv['low']:+.2f}, {iv['high']:+.2f}]"


def verdict(iv: dict, what: str = 'cosub') -> str:
    """What a paired interval says, whatever its sign."""
    if iv['low'] is None:
        return 'one pair only: no conclusion yet'
    if iv['low'] > 0:
        return f'{what} wins (the interval excludes 0)'
    if iv['high'] < 0:
        return f'{what} loses (the interval excludes 0)'
    return 'no significant difference (the interval contains 0)'


# -------------------------------------------------------------- records ---
def machine_load() -> List[float]:
    """1, 5 and 15 min load averages (0s where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return [0.0, 0.0, 0.0]


@contextmanager
def locked(path: str) -> Iterator[None]:
    """Hold ``path + '.lock'`` exclusively: across threads and processes.

    Args:
        path (str): What the lock guards (a file or run directory).
    """
    with open(path + '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def resolved_hash(config_text: str, path: str,
                  adjust: Optional[Callable] = None,
                  ignore: Iterable[str] = ('randomness', 'work_dir')) -> str:
    """Hash of the config ``config_text`` resolves to.

    Args:
        config_text (str): A config file's text (``_base_`` and overrides).
        path (str): Where to write it (it is resolved from a file).
        adjust (Callable, optional): Applied to the loaded ``Config`` first
            (e.g. the schedule scaling ``tools/train.py --length`` does).
        ignore (Iterable[str]): Top-level keys left out (those in the spec).

    Returns:
        str: 16 hex digits; anything that changes the run changes it.
    """
    from mmengine.config import Config
    os.makedirs(osp.dirname(path), exist_ok=True)
    # ``path`` is shared by every thread and process hashing that run (two
    # study drivers side by side): one writing it while another parses it
    # would hash a truncated config
    with locked(path):
        with open(path, 'w') as f:
            f.write(config_text)
        cfg = Config.fromfile(path)
    if adjust is not None:
        adjust(cfg)
    resolved = cfg.to_dict()
    for key in ignore:
        resolved.pop(key, None)
    blob = json.dumps(resolved, sort_keys=True, default=repr)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def write_record(records_dir: str, regime: str, record: dict) -> str:
    """Write ``record`` atomically as ``<regime>/<name>.json``; its path."""
    path = osp.join(records_dir, regime, record['name'] + '.json')
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)
    return path


def load_records(records_dir: str, regime: str) -> List[dict]:
    """Every record of a regime (stale ones included).

    Raises:
        SystemExit: naming the file, when a record is unreadable.
    """
    folder = osp.join(records_dir, regime)
    if not osp.isdir(folder):
        return []
    out = []
    for fn in sorted(os.listdir(folder)):
        if fn.endswith('.json'):
            path = osp.join(folder, fn)
            try:
                with open(path) as f:
                    out.append(json.load(f))
            except (OSError, ValueError) as e:
                raise SystemExit(f'run record {path} is unreadable ({e}); '
                                 'move it away to rerun that run') from e
    return out


def split_stale(records: List[dict], hash_of: Callable[[dict], str]
                ) -> Tuple[Dict[str, dict], List[str]]:
    """Valid records by name, and the names of the stale ones.

    Args:
        records (list[dict]): Records with ``name``, ``spec`` and
            ``config_hash``.
        hash_of (Callable): The hash the current code gives a spec.
    """
    valid, stale = {}, []
    for rec in records:
        if hash_of(rec['spec']) == rec['config_hash']:
            valid[rec['name']] = rec
        else:
            stale.append(rec['name'])
    return valid, stale


def archived(records_dir: str) -> List[Tuple[str, int]]:
    """``(folder, run count)`` of each protocol under ``archive/``."""
    root = osp.join(records_dir, ARCHIVE)
    if not osp.isdir(root):
        return []
    out = []
    for name in sorted(os.listdir(root)):
        folder = osp.join(root, name)
        if osp.isdir(folder):
            count = sum(fn.endswith('.json') for _, _, files in
                        os.walk(folder) for fn in files)
            out.append((f'{ARCHIVE}/{name}', count))
    return out


# ----------------------------------------------------------------- pool ---
def run_pool(todo: Callable[[], List[Tuple[str, object]]],
             execute: Callable[[object], object], jobs: int,
             max_hours: float, max_runs: Optional[int] = None,
             log: Callable[[str], None] = print) -> int:
    """Run what ``todo`` lists, ``jobs`` at a time, until nothing is left.

    ``todo`` is asked again whenever a run finishes, so a stage that depends
    on finished runs is scheduled as soon as its inputs are recorded.

    Args:
        todo (Callable): ``[(name, spec), ...]`` in priority order.
        execute (Callable): Trains one spec (in a worker thread).
        jobs (int): Runs at a time.
        max_hours (float): Start no new run after this many hours.
        max_runs (int, optional): Start at most this many runs.
        log (Callable): Progress lines.

    Returns:
        int: The number of runs started.
    """
    start = time.time()
    started = 0
    running: Dict[object, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        while True:
            budget = (time.time() - start < max_hours * 3600 and
                      (max_runs is None or started < max_runs))
            busy = set(running.values())
            queue = [t for t in (todo() if budget else [])
                     if t[0] not in busy]
            while queue and len(running) < jobs and budget:
                name, spec = queue.pop(0)
                log(f'[{time.time() - start:6.0f} s] start {name}')
                running[pool.submit(execute, spec)] = name
                started += 1
                budget = max_runs is None or started < max_runs
            if not running:
                return started
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                name = running.pop(fut)
                fut.result()
                log(f'[{time.time() - start:6.0f} s] done {name}')
