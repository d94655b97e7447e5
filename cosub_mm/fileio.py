"""Checkpoint IO: weights-only loading, plain containers, atomic writes.

Three guarantees for every checkpoint this toolkit reads or writes:

* **Weights-only loading** (:func:`safe_load`): checkpoints are read with
  torch's weights-only unpickler, so a crafted or foreign checkpoint runs no
  code when loaded; it raises :class:`UnsafeCheckpointError` instead. Full
  unpickling happens only inside :func:`full_unpickling`, which ``Runner.
  resume`` enters only when a run opts in (``--resume-unsafe``).
* **Plain containers** (:func:`to_plain`, :func:`from_plain`): what a
  training checkpoint holds besides tensors (mmengine's message hub with its
  ``HistoryBuffer`` s and numpy values, RNG states, metadata) is written as
  dicts, lists, tuples, numbers, strings and tensors, so the file loads with
  plain ``torch.load(path)`` in any process, without cosub_mm or mmengine;
  :func:`from_plain` rebuilds the objects on resume, bit for bit.
* **Atomic writes** (:func:`atomic_save`, :func:`atomic_write_text`): a file
  is written to a temporary sibling, fsync'ed and renamed over the target, so
  a run killed while saving never leaves a truncated checkpoint; the target
  is either the old file or the complete new one.

Example::

    from cosub_mm.fileio import atomic_save, safe_load

    atomic_save({'state_dict': model.state_dict()}, 'work_dirs/x/iter_1.pth')
    state = safe_load('work_dirs/x/iter_1.pth')['state_dict']

    hub = from_plain(torch.load('work_dirs/x/iter_4.pth')['message_hub'])

``import cosub_mm`` makes mmengine use the same functions (see
:mod:`cosub_mm.stack.checkpoints`).
"""
import contextlib
import os
import os.path as osp
import threading
import uuid
import zipfile
from collections import OrderedDict
from typing import IO, Any, Iterator, List, Optional

import torch

__all__ = [
    'safe_load', 'full_unpickling', 'to_plain', 'from_plain', 'PLAIN_TAG',
    'atomic_save', 'atomic_write_text', 'UnsafeCheckpointError'
]

_local = threading.local()


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint needs full unpickling where only weights may be read."""


def _safe_globals() -> List[Any]:
    """The few globals our own checkpoints need beyond plain tensors.

    Checkpoints written before :func:`to_plain` existed (and mmengine's own,
    once ``HistoryBuffer`` pickles without method references) store the
    ``MessageHub`` as ``HistoryBuffer`` objects holding numpy arrays, and
    numpy scalars. These are data containers: none of them runs code when
    rebuilt.
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
            if isinstance(err, RuntimeError) and 'zip archive' in str(err):
                raise RuntimeError(
                    f'Cannot read checkpoint {filename}: it is truncated or '
                    f'corrupt ({str(err).splitlines()[0]})') from None
            raise
        lines = [line for line in str(err).splitlines() if line.strip()]
        reason = next((line for line in lines if 'Unsupported global' in line
                       or 'Can only build' in line), lines[-1]).strip()
        if isinstance(filename, str) and osp.isfile(filename) and \
                not zipfile.is_zipfile(filename):
            reason += (' (the file is not a zip checkpoint: garbage, '
                       'truncated, or written by torch < 1.6)')
        raise UnsafeCheckpointError(
            f'Refusing to load {filename}: it is not loadable with '
            'weights-only unpickling, so loading it could run arbitrary '
            f'code. Reason: {reason}') from None


@contextlib.contextmanager
def full_unpickling() -> Iterator[None]:
    """Allow full unpickling of checkpoints within this context.

    Entered by ``Runner.resume`` only when the run opts in (``tools/train.py
    --resume-unsafe`` or ``resume_unsafe = True`` in the config), for a
    trusted checkpoint written by another tool. Our own checkpoints never
    need it: they are plain data (:func:`to_plain`). Pretrained weights,
    ``load_from`` and ``tools/test.py`` are always weights-only.
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


#: The key marking a dict written by :func:`to_plain` for a non-plain object.
PLAIN_TAG = '__cosub_mm_type__'

# exact types: numpy's float64 and str_ subclass float and str
_PLAIN_LEAVES = frozenset((type(None), bool, int, float, complex, str, bytes,
                           torch.Size, torch.device, torch.dtype))
# numpy kinds with an exact plain form: bool, ints, floats, complex, strings
_NUMPY_KINDS = 'biufcSU'


def _numpy_to_plain(obj: Any) -> Optional[dict]:
    """The plain form of a numpy array, scalar or dtype (None if none)."""
    import numpy as np
    if isinstance(obj, np.dtype):
        return {PLAIN_TAG: 'numpy.dtype', 'dtype': obj.str} \
            if obj.kind in _NUMPY_KINDS else None
    if not isinstance(obj, (np.ndarray, np.generic)) or \
            obj.dtype.kind not in _NUMPY_KINDS:
        return None
    if isinstance(obj, np.generic):
        return {PLAIN_TAG: 'numpy.scalar', 'dtype': obj.dtype.str,
                'value': obj.item()}
    try:  # a copy: the checkpoint must not share memory with the run
        data: Any = torch.from_numpy(np.array(obj, order='C', copy=True))
    except (TypeError, ValueError):  # strings, big-endian: no tensor
        data = obj.tolist()
    return {PLAIN_TAG: 'numpy.ndarray', 'dtype': obj.dtype.str,
            'shape': list(obj.shape), 'data': data}


def _history_buffer_type() -> Optional[type]:
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
    except ImportError:  # pragma: no cover - mmengine is a dependency
        return None
    return HistoryBuffer


def _same_kind(obj: dict, items: dict) -> dict:
    """A dict or OrderedDict like ``obj`` (with its attributes, e.g. a
    ``state_dict``'s ``_metadata``) holding ``items``."""
    out = type(obj)(items)
    if hasattr(obj, '__dict__'):
        out.__dict__.update(obj.__dict__)
    return out


def to_plain(obj: Any, unknown: Optional[List[str]] = None,
             path: str = 'checkpoint') -> Any:
    """Rewrite ``obj`` with plain containers only, so that it loads with
    plain ``torch.load(path)`` (weights-only) anywhere.

    Tensors, numbers, strings, bytes, ``None`` and dicts, lists, tuples and
    sets of them are kept as they are (the very objects: nothing is copied
    when nothing needs rewriting, so a ``state_dict`` keeps its
    ``_metadata``). mmengine's ``HistoryBuffer`` and numpy arrays, scalars and
    dtypes become dicts tagged with :data:`PLAIN_TAG`, which
    :func:`from_plain` turns back into equal objects (same dtype, same
    bits). Anything else is left in place and its path is added to
    ``unknown``: such a checkpoint needs full unpickling.

    Args:
        obj: A checkpoint dict, or any part of one.
        unknown (list, optional): Collects the paths of objects that have
            no plain form, e.g. ``"checkpoint['meta']['x']"``.
        path (str): The name of ``obj`` in those paths.

    Returns:
        ``obj`` itself when it is plain already, else a rewritten copy of
        the containers that needed it.

    Example:
        >>> hub = runner.message_hub.state_dict()  # HistoryBuffers, numpy
        >>> torch.save(to_plain(hub), 'hub.pth')
        >>> hub = from_plain(torch.load('hub.pth'))  # equal to the original
    """
    kind = type(obj)
    if kind in _PLAIN_LEAVES or isinstance(obj, torch.Tensor):
        return obj
    if kind in (dict, OrderedDict):
        items = {k: to_plain(v, unknown, f'{path}[{k!r}]')
                 for k, v in obj.items()}
        if all(items[k] is v for k, v in obj.items()):
            return obj
        return _same_kind(obj, items)
    if kind in (list, tuple):
        items = [to_plain(v, unknown, f'{path}[{i}]')
                 for i, v in enumerate(obj)]
        if all(a is b for a, b in zip(items, obj)):
            return obj
        return kind(items)
    if kind is set and all(type(v) in _PLAIN_LEAVES for v in obj):
        return obj
    plain = _numpy_to_plain(obj)
    if plain is not None:
        if isinstance(plain.get('data'), list):  # strings stay strings
            plain['data'] = to_plain(plain['data'], unknown, path)
        return plain
    if kind is _history_buffer_type():
        # its data; the statistics methods are class-level registrations
        return {PLAIN_TAG: 'HistoryBuffer', 'max_length': obj.max_length,
                'log_history': to_plain(obj._log_history, unknown, path),
                'count_history': to_plain(obj._count_history, unknown, path)}
    if unknown is not None:
        unknown.append(f'{path} ({kind.__module__}.{kind.__qualname__})')
    return obj


def _plain_to_object(obj: dict) -> Any:
    """Rebuild the object of a dict tagged by :func:`to_plain`.

    Only data objects are built (numpy values of the kinds
    :func:`to_plain` writes, ``HistoryBuffer``); a tag of anything else, or a
    malformed one, raises ``ValueError``: nothing a crafted file says is
    called.
    """
    import numpy as np
    kind = obj[PLAIN_TAG]
    try:
        if kind == 'HistoryBuffer':
            return _history_buffer_type()(
                log_history=_as_array(obj['log_history']),
                count_history=_as_array(obj['count_history']),
                max_length=int(obj['max_length']))
        dtype = np.dtype(str(obj['dtype']))
        if dtype.kind not in _NUMPY_KINDS:
            raise ValueError(f'dtype {dtype} is not plain data')
        if kind == 'numpy.dtype':
            return dtype
        if kind == 'numpy.scalar':
            return dtype.type(obj['value'])
        if kind == 'numpy.ndarray':
            data = obj['data']
            array = data.numpy() if isinstance(data, torch.Tensor) \
                else np.array(data)
            shape = tuple(int(n) for n in obj['shape'])
            return np.array(array, dtype=dtype).reshape(shape)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f'Malformed {PLAIN_TAG}={kind!r} entry in the '
                         f'checkpoint: {err}') from None
    raise ValueError(f'Unknown {PLAIN_TAG}={kind!r} entry in the checkpoint')


def _as_array(value: Any) -> Any:
    import numpy as np
    value = from_plain(value)
    return value if isinstance(value, np.ndarray) else np.array(value)


def from_plain(obj: Any) -> Any:
    """Undo :func:`to_plain`: rebuild the tagged ``HistoryBuffer`` s and numpy
    values, keep everything else (the very objects where nothing changes).

    Args:
        obj: What ``torch.load`` returned for a checkpoint, or a part of it.

    Returns:
        ``obj`` with its tagged dicts replaced by the objects they stand
        for.

    Raises:
        ValueError: For a tagged dict that is malformed or names a type
            :func:`to_plain` does not write.
    """
    kind = type(obj)
    if kind in (dict, OrderedDict):
        if PLAIN_TAG in obj:
            return _plain_to_object(obj)
        items = {k: from_plain(v) for k, v in obj.items()}
        if all(items[k] is v for k, v in obj.items()):
            return obj
        return _same_kind(obj, items)
    if kind in (list, tuple):
        items = [from_plain(v) for v in obj]
        if all(a is b for a, b in zip(items, obj)):
            return obj
        return kind(items)
    return obj


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
