"""mmengine checkpoint fixes: weights-only loading and resume, plain and
atomic writes.

mmengine's loaders for local files and URLs go through
:func:`cosub_mm.fileio.safe_load` (full unpickling only inside
:func:`cosub_mm.fileio.full_unpickling`, which ``Runner.resume`` enters only
when a run opts in with ``resume_unsafe``); every checkpoint mmengine writes
is rewritten with :func:`cosub_mm.fileio.to_plain` (and rebuilt with
:func:`cosub_mm.fileio.from_plain` when loaded), so it loads with plain
``torch.load`` anywhere; ``HistoryBuffer`` pickles its data only;
``CheckpointHook``'s checkpoints and ``last_checkpoint`` pointer are written
with :func:`cosub_mm.fileio.atomic_save` / an atomic temporary file; and a
resume refuses a damaged pointer or a checkpoint of another model before
anything is loaded or written.
"""
import contextlib
import inspect
import logging
import os
import os.path as osp
import re
import threading
import zipfile
from typing import Any, Callable, List, Optional

import torch

from cosub_mm.fileio import (UnsafeCheckpointError, _atomic_file,
                             _full_unpickling_active, atomic_save,
                             from_plain, full_unpickling, safe_load, to_plain)

__all__ = [
    'fix_history_buffer_pickling', 'fix_checkpoint_loading',
    'fix_atomic_checkpoints', 'fix_url_checkpoint_loading',
    'fix_plain_checkpoints', 'fix_resume', 'load_from_local',
    'safe_load_url', 'find_latest_checkpoint', 'check_resume_weights',
    'RESUME_OPT_IN'
]

#: How a run opts in to fully unpickling its resume file.
RESUME_OPT_IN = ('tools/train.py --resume-unsafe, or resume_unsafe = True '
                 'in the config')

_resuming = threading.local()  # the file Runner.resume is reading


def load_from_local(filename: str, map_location: Any) -> Any:
    """mmengine's local checkpoint loader: weights-only, except inside
    :func:`cosub_mm.fileio.full_unpickling` (the ``resume_unsafe`` opt-in)."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    if _full_unpickling_active():
        return torch.load(
            filename, map_location=map_location, weights_only=False)
    return safe_load(filename, map_location)


def fix_checkpoint_loading() -> bool:
    """Make mmengine load checkpoints weights-only.

    Fixes ``Unsupported global: GLOBAL
    mmengine.logging.history_buffer.HistoryBuffer`` (``_pickle.
    UnpicklingError``) raised by torch >= 2.6, whose ``torch.load`` defaults
    to ``weights_only=True``, when mmengine 0.10.7 loads its own checkpoints
    for ``load_from``, ``init_cfg=dict(type='Pretrained')``, ``tools/test.py``
    or ``--resume``. Checkpoints are loaded weights-only with the few data
    classes of :func:`cosub_mm.fileio._safe_globals` allowed (for
    checkpoints written before :func:`fix_plain_checkpoints`), and fully
    unpickled only inside :func:`cosub_mm.fileio.full_unpickling` (the
    ``resume_unsafe`` opt-in of :func:`fix_resume`).

    Does nothing when mmengine's local loader already passes ``weights_only``
    itself, or with a torch whose ``torch.load`` lacks safe globals.

    Returns:
        bool: Whether the fix was applied.
    """
    if not hasattr(torch.serialization, 'safe_globals'):
        return False
    from mmengine.runner import checkpoint as ckpt
    loader = ckpt.CheckpointLoader._schemes.get('')
    if loader is load_from_local:
        return False
    if loader is not None and 'weights_only' in inspect.getsource(loader):
        return False
    ckpt.CheckpointLoader.register_scheme(prefixes='', force=True)(
        load_from_local)
    ckpt.load_from_local = load_from_local
    return True


def safe_load_url(url: str,
                  model_dir: Optional[str] = None,
                  map_location: Any = None,
                  progress: bool = True,
                  check_hash: bool = False,
                  file_name: Optional[str] = None) -> Any:
    """Download a checkpoint like ``torch.hub`` does, then
    :func:`cosub_mm.fileio.safe_load`.

    Same arguments as mmengine's ``load_url``; the file is cached in
    ``model_dir`` (default ``$TORCH_HOME/hub/checkpoints``).
    """
    from urllib.parse import urlparse
    from torch.hub import HASH_REGEX, download_url_to_file, get_dir
    model_dir = model_dir or osp.join(get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    name = file_name or osp.basename(urlparse(url).path)
    cached = osp.join(model_dir, name)
    if not osp.exists(cached):
        match = HASH_REGEX.search(name) if check_hash else None
        download_url_to_file(
            url, cached, match.group(1) if match else None,
            progress=progress)
    return safe_load(cached, map_location)


def fix_url_checkpoint_loading() -> bool:
    """Load ``http(s)://`` (and ``torchvision://``, ``open-mmlab://``,
    ``mmcls://``) checkpoints weights-only.

    Fixes arbitrary code execution from a downloaded checkpoint: mmengine
    0.10.7's ``load_from_http`` (used by ``init_cfg=dict(type='Pretrained',
    checkpoint='https://...')`` and ``load_from='https://...'``) calls
    ``torch.hub.load_state_dict_from_url``, whose ``weights_only`` defaults
    to False even on torch 2.13, so the remote pickle is fully unpickled.
    With the fix the file is downloaded to the same cache and read with
    :func:`cosub_mm.fileio.safe_load`: a crafted file raises
    :class:`cosub_mm.fileio.UnsafeCheckpointError`.

    Returns:
        bool: Whether the fix was applied.
    """
    from mmengine.runner import checkpoint as ckpt
    if getattr(ckpt, 'load_url', None) is safe_load_url:
        return False
    ckpt.load_url = safe_load_url
    return True


def _checkpoint_hook_open(file: Any, mode: str = 'r', *args: Any,
                          **kwargs: Any) -> Any:
    """``open`` for mmengine's checkpoint_hook module: the ``last_checkpoint``
    pointer is written atomically, every other file as usual."""
    if mode == 'w' and osp.basename(str(file)) == 'last_checkpoint':
        return _atomic_file(str(file), 'w')
    return open(file, mode, *args, **kwargs)


def fix_atomic_checkpoints() -> bool:
    """Write local checkpoints and ``last_checkpoint`` atomically.

    Fixes torn checkpoints: mmengine 0.10.7's ``save_checkpoint`` writes
    ``work_dir/iter_N.pth`` in place (``LocalBackend.put``: ``open(path,
    'wb')``) and ``CheckpointHook`` rewrites ``last_checkpoint`` in place,
    with no flush to disk. A run killed (SIGKILL, OOM killer, pre-emption,
    power loss) while saving leaves a truncated ``.pth`` (``RuntimeError:
    PytorchStreamReader failed reading zip archive: failed finding central
    directory`` on resume) or an empty pointer. With the fix each file is
    written to a temporary file in the same folder, fsync'ed and renamed
    over the target, and since ``CheckpointHook`` writes the pointer after
    ``runner.save_checkpoint`` returns, the pointer changes only after the
    rename. Remote back ends (``s3://``, ``pavi://``...) are unchanged.

    Returns:
        bool: Whether the fix was applied.
    """
    from mmengine.fileio import get_file_backend
    from mmengine.fileio.backends import LocalBackend
    from mmengine.hooks import checkpoint_hook
    from mmengine.runner import checkpoint as ckpt
    from mmengine.runner import runner as runner_module
    original = ckpt.save_checkpoint
    if getattr(original, '_cosub_atomic', False):
        return False

    def save_checkpoint(checkpoint: dict,
                        filename: str,
                        file_client_args: Optional[dict] = None,
                        backend_args: Optional[dict] = None) -> None:
        local = (file_client_args is None
                 and not str(filename).startswith('pavi://') and isinstance(
                     get_file_backend(filename, backend_args=backend_args),
                     LocalBackend))
        if not local:
            return original(checkpoint, filename, file_client_args,
                            backend_args)
        atomic_save(checkpoint, str(filename))

    save_checkpoint.__doc__ = original.__doc__
    save_checkpoint._cosub_atomic = True
    ckpt.save_checkpoint = save_checkpoint
    runner_module.save_checkpoint = save_checkpoint
    checkpoint_hook.open = _checkpoint_hook_open
    return True


def _history_buffer_getstate(self: Any) -> dict:
    """Pickle a HistoryBuffer's data only, not its statistics methods."""
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def fix_history_buffer_pickling() -> bool:
    """Keep code references out of the ``HistoryBuffer`` s in checkpoints.

    mmengine 0.10.7's ``HistoryBuffer.__getstate__`` pickles its statistics
    methods as ``builtins.getattr(HistoryBuffer, 'min')`` and so on, so
    every checkpoint's ``message_hub`` fails weights-only loading with
    ``Unsupported global: GLOBAL builtins.getattr`` — and allow-listing
    ``getattr`` would open the door to arbitrary code. The methods are
    class-level registrations that ``__setstate__`` restores anyway, so only
    the data is pickled.

    Returns:
        bool: Whether the fix was applied.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    if HistoryBuffer.__getstate__ is _history_buffer_getstate:
        return False
    probe = HistoryBuffer()
    if not any(callable(v) or isinstance(v, dict) and any(
            callable(m) for m in v.values())
               for v in probe.__getstate__().values()):
        return False
    probe.__dict__.pop('statistics_methods', None)
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    return True


def fix_plain_checkpoints() -> bool:
    """Write checkpoints as plain containers; rebuild them when loading.

    Fixes ``_pickle.UnpicklingError: Weights only load failed ...
    Unsupported global: GLOBAL mmengine.logging.history_buffer.HistoryBuffer``
    (then ``numpy._core.multiarray._reconstruct``, ``numpy.dtype``...) raised
    by plain ``torch.load(path)`` (weights-only by default since torch 2.6)
    on an ``epoch_N.pth`` / ``iter_N.pth`` of mmengine 0.10.7 in any process
    that does not allow-list those classes: another tool, a notebook, timm.
    mmengine's ``save_checkpoint`` (``Runner.save_checkpoint``, called after
    the ``before_save_checkpoint`` hooks, so it sees all they add) now writes
    :func:`cosub_mm.fileio.to_plain` of the checkpoint: the message hub's
    ``HistoryBuffer`` s and numpy values become tagged dicts of tensors and
    numbers; ``CheckpointLoader.load_checkpoint`` (every scheme) applies
    :func:`cosub_mm.fileio.from_plain`, so ``Runner.resume`` restores the
    message hub as it was. An object without a plain form is written as it
    is, with a warning naming it and the file.

    Returns:
        bool: Whether the fix was applied.
    """
    from mmengine.logging import print_log
    from mmengine.runner import checkpoint as ckpt
    from mmengine.runner import runner as runner_module
    original_save = ckpt.save_checkpoint
    if getattr(original_save, '_cosub_plain', False):
        return False

    def save_checkpoint(checkpoint: dict,
                        filename: str,
                        file_client_args: Optional[dict] = None,
                        backend_args: Optional[dict] = None) -> None:
        unknown: List[str] = []
        plain = to_plain(checkpoint, unknown)
        if unknown:
            print_log(
                f'Checkpoint {filename} holds objects without a plain form: '
                f'{", ".join(unknown)}. It will not load weights-only (plain '
                f'torch.load, --resume); resuming from it needs '
                f'{RESUME_OPT_IN}.', logger='current', level=logging.WARNING)
        return original_save(plain, filename, file_client_args, backend_args)

    save_checkpoint.__doc__ = original_save.__doc__
    save_checkpoint._cosub_plain = True
    ckpt.save_checkpoint = save_checkpoint
    runner_module.save_checkpoint = save_checkpoint

    original_load = ckpt.CheckpointLoader.__dict__['load_checkpoint'].__func__

    def load_checkpoint(cls: type, filename: str, map_location: Any = None,
                        logger: Any = 'current') -> Any:
        return from_plain(original_load(cls, filename, map_location, logger))

    load_checkpoint.__doc__ = original_load.__doc__
    ckpt.CheckpointLoader.load_checkpoint = classmethod(load_checkpoint)
    return True


def _newest_checkpoint(folder: str) -> Optional[str]:
    """The ``epoch_N.pth`` / ``iter_N.pth`` of ``folder`` with the largest N
    that is a complete zip file, or None."""
    found = []
    for name in os.listdir(folder):
        match = re.fullmatch(r'(?:epoch|iter)_(\d+)\.pth', name)
        path = osp.join(folder, name)
        if match and zipfile.is_zipfile(path):
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def find_latest_checkpoint(path: str) -> Optional[str]:
    """mmengine's ``find_latest_checkpoint`` that refuses a damaged pointer.

    Args:
        path (str): The work_dir.

    Returns:
        str or None: The checkpoint ``{path}/last_checkpoint`` names; None
        (mmengine's "Did not find last_checkpoint", a new run) when there is
        no pointer.

    Raises:
        FileNotFoundError: When the pointer is empty or names no file
            (truncated, garbage, or a work_dir moved from elsewhere),
            naming the pointer, what it holds and the newest checkpoint of
            the work_dir to pass to ``--resume`` instead. The run stops
            before anything is loaded or written: resuming another
            checkpoint than the one the pointer meant is left to the user.
    """
    from mmengine.runner import checkpoint as ckpt
    pointer = osp.join(path, 'last_checkpoint')
    if not osp.exists(pointer):
        return ckpt.find_latest_checkpoint(path)
    with open(pointer, 'rb') as f:
        name = f.read().decode('utf-8', errors='replace').strip()
    if '://' in name or (name and osp.isfile(name)):
        return name  # a remote back end's path is left to mmengine
    newest = _newest_checkpoint(path)
    hint = (f'The newest complete checkpoint in {path} is {newest}: to '
            f'resume from it, pass it: --resume {newest}'
            if newest else f'{path} holds no epoch_N.pth or iter_N.pth')
    shown = name if len(name) <= 200 else name[:200] + '...'
    raise FileNotFoundError(
        f'Cannot resume: the checkpoint pointer {pointer} is damaged: it '
        f'holds {shown!r}, which is not a checkpoint file (a truncated or '
        'garbage pointer, or a work_dir moved from elsewhere). Nothing was '
        f'loaded and nothing in the work_dir was written. {hint}.')


def check_resume_weights(model: torch.nn.Module, checkpoint: dict,
                         filename: str,
                         revise_keys: Any = ((r'^module\.', ''), )) -> None:
    """Refuse to resume from weights that do not fit ``model`` exactly.

    mmengine loads a resume file non-strictly and only logs the mismatched
    keys, then continues training and overwrites the run's checkpoints.

    Args:
        model (nn.Module): The runner's model (not a wrapper).
        checkpoint (dict): The loaded checkpoint.
        filename (str): Its path, for the message.
        revise_keys: mmengine's ``(pattern, replacement)`` key revisions.

    Raises:
        ValueError: Naming the file and listing the missing keys, the
            unexpected keys and the keys whose shapes differ.
    """
    state = checkpoint.get('state_dict', checkpoint)
    revised = {}
    for key, value in state.items():
        for pattern, replacement in revise_keys:
            key = re.sub(pattern, replacement, key)
        revised[key] = value
    own = model.state_dict()
    missing = [k for k in own if k not in revised
               and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in revised if k not in own]
    shapes = [f'{k} {tuple(revised[k].shape)} in the file vs '
              f'{tuple(own[k].shape)} in the model'
              for k in own if k in revised and hasattr(revised[k], 'shape')
              and tuple(revised[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or shapes):
        return

    def listed(keys: List[str]) -> str:
        more = f' ... ({len(keys) - 10} more)' if len(keys) > 10 else ''
        return ', '.join(keys[:10]) + more if keys else 'none'

    raise ValueError(
        f'Cannot resume from {filename}: its weights do not match the model '
        f'{type(model).__name__} of this config (a checkpoint of another '
        f'config?). Shape mismatches: {listed(shapes)}. Missing keys: '
        f'{listed(missing)}. Unexpected keys: {listed(unexpected)}. Nothing '
        'was resumed and nothing in the work_dir was written. Resume from a '
        'checkpoint of this config; to start a new run from these weights, '
        'use load_from instead.')


def fix_resume() -> bool:
    """Resume weights-only, from a sound pointer, into a matching model.

    Fixes three faults of mmengine 0.10.7's ``Runner.resume`` /
    ``--resume``:

    * a crafted resume file ran code: ``Runner.resume`` used to unpickle
      fully. It is now weights-only like every other load (our checkpoints
      are plain, :func:`fix_plain_checkpoints`); a file that needs more
      raises :class:`cosub_mm.fileio.UnsafeCheckpointError` naming it and
      the opt-in, :data:`RESUME_OPT_IN`, which runs the resume inside
      :func:`cosub_mm.fileio.full_unpickling` for a trusted file written
      by another tool;
    * ``--resume`` (auto) with a truncated or garbage ``last_checkpoint``
      failed with ``FileNotFoundError: <garbage> can not be found.``, not
      naming the pointer: :func:`find_latest_checkpoint`;
    * a checkpoint of another config was loaded non-strictly (a warning),
      and the run went on and overwrote the work_dir's checkpoints:
      :func:`check_resume_weights` raises before any weight is loaded.

    A resuming runner also writes its copy of the config
    (``work_dir/CONFIG.py``, which ``Runner.__init__`` rewrote at every
    start) only once the resume succeeded, so a refused resume leaves every
    file of the work_dir as it was.

    Returns:
        bool: Whether the fix was applied.
    """
    from mmengine.runner import Runner
    from mmengine.runner import runner as runner_module
    original_resume: Callable = Runner.resume
    if getattr(original_resume, '_cosub_resume', False):
        return False
    original_to_model = runner_module._load_checkpoint_to_model

    def resume(self: Runner, filename: str, *args: Any,
               **kwargs: Any) -> None:
        unsafe = bool(self.cfg.get('resume_unsafe', False))
        if unsafe:
            self.logger.warning(
                f'resume_unsafe: fully unpickling {filename}; this runs any '
                'code the file holds. Use it only for a file you trust.')
        previous = getattr(_resuming, 'filename', None)
        _resuming.filename = filename
        try:
            with full_unpickling() if unsafe else contextlib.nullcontext():
                return original_resume(self, filename, *args, **kwargs)
        except UnsafeCheckpointError as err:
            raise UnsafeCheckpointError(
                f'{err}\nNothing in it was run and nothing was resumed. '
                f'If you trust {filename} (a checkpoint written by another '
                f'tool), resume from it with full unpickling: '
                f'{RESUME_OPT_IN}.') from None
        finally:
            _resuming.filename = previous

    def load_checkpoint_to_model(model: torch.nn.Module, checkpoint: dict,
                                 strict: bool = False, logger: Any = None,
                                 revise_keys: Any = ((r'^module\.', ''), )
                                 ) -> dict:
        filename = getattr(_resuming, 'filename', None)
        if filename is not None:
            check_resume_weights(model, checkpoint, filename, revise_keys)
        return original_to_model(model, checkpoint, strict, logger,
                                 revise_keys=list(revise_keys))

    original_dump: Callable = Runner.dump_config
    original_load_or_resume: Callable = Runner.load_or_resume

    def dump_config(self: Runner) -> None:
        if self._resume and not self._has_loaded:
            self._cosub_dump_pending = True  # once the resume succeeded
            return
        original_dump(self)

    def load_or_resume(self: Runner) -> None:
        original_load_or_resume(self)
        if getattr(self, '_cosub_dump_pending', False):
            self._cosub_dump_pending = False
            original_dump(self)

    resume.__doc__ = original_resume.__doc__
    resume._cosub_resume = True
    Runner.resume = resume
    dump_config.__doc__ = original_dump.__doc__
    Runner.dump_config = dump_config
    load_or_resume.__doc__ = original_load_or_resume.__doc__
    Runner.load_or_resume = load_or_resume
    runner_module._load_checkpoint_to_model = load_checkpoint_to_model
    runner_module.find_latest_checkpoint = find_latest_checkpoint
    return True
