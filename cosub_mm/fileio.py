"""Checkpoint IO: weights-only loading and atomic writes.

Two guarantees for every checkpoint this toolkit reads or writes:

* **Weights-only loading** (:func:`safe_load`): checkpoints are read with
  torch's weights-only unpickler, so a crafted or foreign checkpoint runs no
  code when loaded; it raises :class:`UnsafeCheckpointError` instead. Only
  resuming our own training state unpickles fully, inside
  :func:`full_unpickling`.
* **Atomic writes** (:func:`atomic_save`, :func:`atomic_write_text`): a file
  is written to a temporary sibling, fsync'ed and renamed over the target, so
  a run killed while saving never leaves a truncated checkpoint; the target
  is either the old file or the complete new one.

Example::

    from cosub_mm.fileio import atomic_save, safe_load

    atomic_save({'state_dict': model.state_dict()}, 'work_dirs/x/iter_1.pth')
    state = safe_load('work_dirs/x/iter_1.pth')['state_dict']

``import cosub_mm`` makes mmengine use the same functions (see
:mod:`cosub_mm.stack.checkpoints`).
"""
import contextlib
import os
import os.path as osp
import threading
import uuid
from typing import IO, Any, Iterator, List

import torch

__all__ = [
    'safe_load', 'full_unpickling', 'atomic_save', 'atomic_write_text',
    'UnsafeCheckpointError'
]

_local = threading.local()


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint needs full unpickling where only weights may be read."""


def _safe_globals() -> List[Any]:
    """The few globals our own checkpoints need beyond plain tensors.

    mmengine stores its ``MessageHub`` (``HistoryBuffer`` objects holding
    numpy arrays) and numpy scalars in ``meta``. These are data containers:
    none of them runs code when rebuilt.
    """
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer
    allowed: List[Any] = [HistoryBuffer, np.ndarray, np.dtype]
    multiarray = getattr(np, '_core', np.core).multiarray
    allowed += [multiarray._reconstruct, multiarray.scalar]
    # numpy >= 2 rebuilds dtypes through their per-type classes.
    return allowed + [
        type(np.dtype(t)) for t in ('float64', 'float32', 'float16', 'int64',
                                    'int32', 'uint8', 'bool')
    ]


def safe_load(filename: str, map_location: Any = 'cpu') -> Any:
    """Load a checkpoint with torch's weights-only unpickler.

    Args:
        filename (str): Path of the checkpoint.
        map_location: Same as :func:`torch.load`.

    Returns:
        The loaded object.

    Raises:
        UnsafeCheckpointError: When the file needs globals that could run
            code when unpickled (a crafted or foreign checkpoint).
    """
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises pickle.UnpicklingError
        if 'Weights only load failed' not in str(err):
            raise
        lines = [line for line in str(err).splitlines() if line.strip()]
        reason = next((line for line in lines if 'Unsupported global' in line
                       or 'Can only build' in line), lines[-1])
        raise UnsafeCheckpointError(
            f'Refusing to load {filename}: it is not loadable with '
            'weights-only unpickling, so loading it could run arbitrary '
            'code. Only resuming our own training state (--resume) unpickles '
            f'fully. Reason: {reason.strip()}') from None


@contextlib.contextmanager
def full_unpickling() -> Iterator[None]:
    """Allow full unpickling of checkpoints within this context.

    Used by ``Runner.resume`` only: a resume file is the user's own training
    state (optimizer, schedulers, message hub, RNG state), written by this
    runner into its work_dir, so trusting it is as safe as trusting the
    work_dir. Pretrained weights, ``load_from`` and ``tools/test.py`` stay
    weights-only because those files usually come from elsewhere.
    """
    previous = getattr(_local, 'full', False)
    _local.full = True
    try:
        yield
    finally:
        _local.full = previous


def _full_unpickling_active() -> bool:
    """Whether this thread is inside :func:`full_unpickling`."""
    return getattr(_local, 'full', False)


def _fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable (no-op where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_file(filename: str, mode: str = 'wb') -> Iterator[IO]:
    """Open a temporary sibling of ``filename``; rename it there on success.

    The data goes to ``.<name>.<random>.tmp`` in the same folder (a rename
    is atomic only within one file system), is flushed and fsync'ed, and
    only then replaces ``filename``. A process killed meanwhile leaves
    ``filename`` as it was, plus a stray ``.tmp`` file that the next save
    of the same name removes.
    """
    filename = osp.abspath(osp.expanduser(filename))
    folder, name = osp.split(filename)
    os.makedirs(folder, exist_ok=True)
    prefix = f'.{name}.'
    for stale in os.listdir(folder):
        if stale.startswith(prefix) and stale.endswith('.tmp'):
            with contextlib.suppress(OSError):
                os.remove(osp.join(folder, stale))
    tmp = osp.join(folder, f'{prefix}{uuid.uuid4().hex[:8]}.tmp')
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filename)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_dir(folder)


def atomic_save(obj: Any, filename: str) -> None:
    """``torch.save`` to ``filename`` atomically (temp file, fsync, rename).

    Args:
        obj: What to save, usually a checkpoint dict.
        filename (str): Local path of the checkpoint.
    """
    with _atomic_file(filename, 'wb') as f:
        torch.save(obj, f)


def atomic_write_text(text: str, filename: str) -> None:
    """Write ``text`` to ``filename`` atomically (temp file, fsync, rename).
    """
    with _atomic_file(filename, 'w') as f:
        f.write(text)
