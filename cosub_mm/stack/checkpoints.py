"""mmengine checkpoint fixes: weights-only loading, atomic writes.

mmengine's loaders for local files and URLs go through
:func:`cosub_mm.fileio.safe_load` (``Runner.resume`` excepted, inside
:func:`cosub_mm.fileio.full_unpickling`), ``HistoryBuffer`` pickles its data
only so that checkpoints stay weights-only loadable, and ``CheckpointHook``'s
checkpoints and ``last_checkpoint`` pointer are written with
:func:`cosub_mm.fileio.atomic_save` / an atomic temporary file.
"""
import inspect
import os
import os.path as osp
from typing import Any, Callable, Optional

import torch

from cosub_mm.fileio import (_atomic_file, _full_unpickling_active,
                             atomic_save, full_unpickling, safe_load)

__all__ = [
    'fix_history_buffer_pickling', 'fix_checkpoint_loading',
    'fix_atomic_checkpoints', 'fix_url_checkpoint_loading',
    'load_from_local', 'safe_load_url'
]


def load_from_local(filename: str, map_location: Any) -> Any:
    """mmengine's local checkpoint loader, weights-only unless resuming."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    if _full_unpickling_active():
        return torch.load(
            filename, map_location=map_location, weights_only=False)
    return safe_load(filename, map_location)


def fix_checkpoint_loading() -> bool:
    """Make mmengine load checkpoints weights-only, resume excepted.

    Fixes ``Unsupported global: GLOBAL
    mmengine.logging.history_buffer.HistoryBuffer`` (``_pickle.
    UnpicklingError``) raised by torch >= 2.6, whose ``torch.load`` defaults
    to ``weights_only=True``, when mmengine 0.10.7 loads its own checkpoints
    for ``load_from``, ``init_cfg=dict(type='Pretrained')``, ``tools/test.py``
    or ``--resume``. Pretrained weights are loaded weights-only with the few
    data classes of :func:`cosub_mm.fileio._safe_globals` allowed;
    ``Runner.resume`` (and only it) runs inside
    :func:`cosub_mm.fileio.full_unpickling`.

    Does nothing when mmengine's local loader already passes ``weights_only``
    itself, or with a torch whose ``torch.load`` lacks safe globals.

    Returns:
        bool: Whether the fix was applied.
    """
    if not hasattr(torch.serialization, 'safe_globals'):
        return False
    from mmengine.runner import Runner
    from mmengine.runner import checkpoint as ckpt
    loader = ckpt.CheckpointLoader._schemes.get('')
    if loader is load_from_local:
        return False
    if loader is not None and 'weights_only' in inspect.getsource(loader):
        return False
    ckpt.CheckpointLoader.register_scheme(prefixes='', force=True)(
        load_from_local)
    ckpt.load_from_local = load_from_local
    original_resume: Callable = Runner.resume

    def resume(self: Runner, *args: Any, **kwargs: Any) -> None:
        with full_unpickling():
            return original_resume(self, *args, **kwargs)

    resume.__doc__ = original_resume.__doc__
    Runner.resume = resume
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
