"""Workarounds for the pinned OpenMMLab stack, applied by ``import cosub_mm``.

Each fix is guarded so that it does nothing where it is not needed, and each
docstring names the exact error it fixes. They must run before ``mmseg`` or
``mmpretrain`` modules are imported, which is why ``cosub_mm/__init__.py``
calls :func:`apply_all` first.
"""
import contextlib
import importlib.util
import inspect
import os
import os.path as osp
import sys
import threading
import types
import uuid
from typing import IO, Any, Callable, Iterator, List, Optional

import torch

__all__ = [
    'apply_all', 'fix_torchvision_cpu_ops', 'fix_mmcv_lite_ops',
    'fix_history_buffer_pickling', 'fix_checkpoint_loading',
    'fix_cpu_distributed', 'fix_atomic_checkpoints',
    'fix_empty_dataset_error', 'fix_url_checkpoint_loading',
    'fix_deit3_ffn_norm',
    'full_unpickling', 'safe_load_url',
    'safe_load', 'atomic_save', 'atomic_write_text', 'UnsafeCheckpointError'
]

_applied: List[str] = []
# Keep the library object alive: its schemas are removed when it is freed.
_torchvision_lib: Optional[Any] = None
_local = threading.local()


def _torchvision_c_loads() -> bool:
    """Return whether torchvision's compiled ``_C`` library can be loaded."""
    spec = importlib.util.find_spec('torchvision')
    if spec is None or not spec.submodule_search_locations:
        return True  # nothing to fix if torchvision is absent
    for folder in spec.submodule_search_locations:
        for name in ('_C.so', '_C.pyd'):
            path = osp.join(folder, name)
            if osp.exists(path):
                try:
                    torch.ops.load_library(path)
                    return True
                except (OSError, RuntimeError):
                    return False
    return False


def fix_torchvision_cpu_ops() -> bool:
    """Define torchvision's ``nms``/``qnms`` schemas when its ``_C`` fails.

    Fixes ``RuntimeError: operator torchvision::nms does not exist`` raised by
    ``import torchvision`` when torchvision 0.28.0 (whose ``_C.so`` links CUDA
    libraries) sits beside the CPU build of torch 2.13.0: torchvision's meta
    registrations then refer to operators that were never defined.

    Does nothing beside a CUDA torch (defining the schemas there aborts the
    process), when torchvision is already imported, or when ``_C`` loads.

    Returns:
        bool: Whether the fix was applied.
    """
    global _torchvision_lib
    if (torch.version.cuda is not None or 'torchvision' in sys.modules
            or _torchvision_lib is not None or _torchvision_c_loads()):
        return False
    lib = torch.library.Library('torchvision', 'DEF')
    lib.define('nms(Tensor dets, Tensor scores, float iou_threshold) '
               '-> Tensor')
    lib.define('qnms(Tensor dets, Tensor scores, float iou_threshold) '
               '-> Tensor')
    _torchvision_lib = lib
    return True


def _mmcv_ops_stand_in() -> types.ModuleType:
    """Build a ``mmcv.ops`` module that offers the pure-Python ops only."""
    module = types.ModuleType('mmcv.ops')
    module.__doc__ = ('cosub_mm stand-in for mmcv.ops under mmcv-lite: only '
                      'pure-Python ops are available.')
    spec = importlib.util.find_spec('mmcv')
    path = osp.join(spec.submodule_search_locations[0], 'ops',
                    'point_sample.py')
    ps_spec = importlib.util.spec_from_file_location('mmcv.ops.point_sample',
                                                     path)
    point_sample_mod = importlib.util.module_from_spec(ps_spec)
    ps_spec.loader.exec_module(point_sample_mod)
    sys.modules['mmcv.ops.point_sample'] = point_sample_mod
    module.point_sample = point_sample_mod.point_sample
    module.bilinear_grid_sample = point_sample_mod.bilinear_grid_sample

    def sigmoid_focal_loss(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(
            'sigmoid_focal_loss needs mmcv compiled ops (mmcv._ext), which '
            'mmcv-lite lacks: install the full mmcv==2.1.0 or use another '
            'loss.')

    module.sigmoid_focal_loss = sigmoid_focal_loss

    def __getattr__(name: str) -> Any:
        if name.startswith('__'):
            raise AttributeError(name)
        # ModuleNotFoundError (not AttributeError) so that mmseg's
        # ``except ModuleNotFoundError`` guards around optional heads work.
        raise ModuleNotFoundError(
            f'mmcv.ops.{name} needs mmcv compiled ops (mmcv._ext), which '
            'mmcv-lite lacks; install the full mmcv==2.1.0 to use it.')

    module.__getattr__ = __getattr__
    return module


def fix_mmcv_lite_ops() -> bool:
    """Provide a stand-in ``mmcv.ops`` under mmcv-lite.

    Fixes ``ModuleNotFoundError: No module named 'mmcv._ext'`` raised when
    mmseg 1.2.2 imports ``mmcv.ops.point_sample`` at import time
    (``mmseg/utils/mask_classification.py``, ``focal_loss.py``,
    ``san_head.py``) while only mmcv-lite, without compiled ops, is installed.

    Does nothing when mmcv is absent, when ``mmcv._ext`` exists (the full
    mmcv) or when ``mmcv.ops`` was imported already.

    Returns:
        bool: Whether the fix was applied.
    """
    if 'mmcv.ops' in sys.modules or importlib.util.find_spec('mmcv') is None:
        return False
    if importlib.util.find_spec('mmcv._ext') is not None:
        return False
    import mmcv
    module = _mmcv_ops_stand_in()
    sys.modules['mmcv.ops'] = module
    mmcv.ops = module
    return True


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


def load_from_local(filename: str, map_location: Any) -> Any:
    """mmengine's local checkpoint loader, weights-only unless resuming."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    if getattr(_local, 'full', False):
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
    data classes of :func:`_safe_globals` allowed; ``Runner.resume`` (and only
    it) runs inside :func:`full_unpickling`.

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
    """Download a checkpoint like ``torch.hub`` does, then :func:`safe_load`.

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
    Now the file is downloaded to the same cache and read with
    :func:`safe_load`: a crafted file raises :class:`UnsafeCheckpointError`.

    Returns:
        bool: Whether the fix was applied.
    """
    from mmengine.runner import checkpoint as ckpt
    if getattr(ckpt, 'load_url', None) is safe_load_url:
        return False
    ckpt.load_url = safe_load_url
    return True


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
    directory`` on resume) or an empty pointer. Now each file is written to a
    temporary file in the same folder, fsync'ed and renamed over the target,
    and since ``CheckpointHook`` writes the pointer after
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


def fix_empty_dataset_error() -> bool:
    """Name the folder when a dataset finds no samples.

    Fixes ``ValueError: need at least one array to concatenate`` raised by
    mmengine 0.10.7's ``BaseDataset._serialize_data`` (``np.concatenate``
    of an empty list) when a dataset, e.g. mmseg's ``ADE20KDataset``, finds
    no image in an existing but empty (or wrongly named) folder. The error
    now names the dataset class, ``data_root``, ``data_prefix`` and
    ``ann_file``.

    Returns:
        bool: Whether the fix was applied.
    """
    from mmengine.dataset import BaseDataset
    original = BaseDataset._serialize_data
    if getattr(original, '_cosub_checked', False):
        return False

    def _serialize_data(self: Any) -> Any:
        if len(self.data_list) == 0:
            raise ValueError(
                f'{type(self).__name__} found no samples: data_root='
                f'{self.data_root!r}, data_prefix={self.data_prefix!r}, '
                f'ann_file={self.ann_file!r}. Check that the folder holds '
                'images (and annotations) with the expected suffixes.')
        return original(self)

    _serialize_data._cosub_checked = True
    BaseDataset._serialize_data = _serialize_data
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


@contextlib.contextmanager
def _no_cuda_set_device() -> Iterator[None]:
    original = torch.cuda.set_device
    torch.cuda.set_device = lambda device: None
    try:
        yield
    finally:
        torch.cuda.set_device = original


def fix_cpu_distributed() -> bool:
    """Let mmengine's launchers start CPU-only (gloo) process groups.

    Fixes ``AttributeError: module 'torch._C' has no attribute
    '_cuda_setDevice'`` raised by mmengine 0.10.7's ``init_dist`` (pytorch,
    slurm and mpi launchers call ``torch.cuda.set_device`` unconditionally)
    under a CPU build of torch, e.g. ``tools/dist_train.sh`` on a CPU
    machine. On such a build the device selection is skipped, ``nccl``
    becomes ``gloo``, and DDP wraps CPU modules without ``device_ids``.

    Does nothing when CUDA is available.

    Returns:
        bool: Whether the fix was applied.
    """
    if torch.cuda.is_available():
        return False
    from mmengine.dist import utils as dist_utils

    def cpu_safe(init: Callable) -> Callable:
        def wrapper(backend: str, *args: Any, **kwargs: Any) -> None:
            if backend == 'nccl':
                backend = 'gloo'  # nccl needs CUDA
            with _no_cuda_set_device():
                return init(backend, *args, **kwargs)

        wrapper.__doc__ = init.__doc__
        wrapper._cosub_mm_cpu = True
        return wrapper

    names = ('_init_dist_pytorch', '_init_dist_slurm', '_init_dist_mpi')
    if getattr(dist_utils._init_dist_pytorch, '_cosub_mm_cpu', False):
        return False
    for name in names:
        setattr(dist_utils, name, cpu_safe(getattr(dist_utils, name)))

    # Runner.wrap_model passes device_ids=[LOCAL_RANK], which DDP refuses
    # for CPU modules: ``ValueError: DistributedDataParallel device_ids and
    # output_device arguments only work with single-device/multiple-device
    # GPU modules or CPU modules``.
    from mmengine.model.wrappers import MMDistributedDataParallel
    original_init = MMDistributedDataParallel.__init__

    def ddp_init(self: Any, module: torch.nn.Module, *args: Any,
                 **kwargs: Any) -> None:
        if all(p.device.type == 'cpu' for p in module.parameters()):
            kwargs['device_ids'] = None
            kwargs.pop('output_device', None)
        original_init(self, module, *args, **kwargs)

    MMDistributedDataParallel.__init__ = ddp_init
    return True


def _deit3_layer_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    x = x + self.attn(self.ln1(x))
    return self.ffn(self.ln2(x), identity=x)


def fix_deit3_ffn_norm() -> bool:
    """Normalise the FFN input of mmpretrain's DeiT III blocks with ``ln2``.

    mmpretrain 1.2.0's ``DeiT3TransformerEncoderLayer.forward`` computes
    ``self.ffn(self.ln1(x), identity=x)``: ``ln2`` is built but never used, so
    the block is not DeiT III's (official DeiT III / cosub checkpoints
    converted to mmpretrain give wrong features) and DDP fails with
    ``RuntimeError: Expected to have finished reduction in the prior
    iteration before starting a new one`` (``ln2`` gets no gradient) unless
    ``find_unused_parameters=True``.

    Does nothing when mmpretrain's forward already uses ``ln2``.

    Returns:
        bool: Whether the fix was applied.
    """
    from mmpretrain.models.backbones.deit3 import \
        DeiT3TransformerEncoderLayer as Layer
    if Layer.forward is _deit3_layer_forward:
        return False
    if 'self.ffn(self.ln1(x)' not in inspect.getsource(Layer.forward):
        return False
    Layer.forward = _deit3_layer_forward
    return True


def apply_all() -> List[str]:
    """Apply every fix needed on this stack; return the names applied."""
    for fix in (fix_torchvision_cpu_ops, fix_mmcv_lite_ops,
                fix_history_buffer_pickling, fix_checkpoint_loading,
                fix_cpu_distributed, fix_atomic_checkpoints,
                fix_empty_dataset_error, fix_url_checkpoint_loading,
                fix_deit3_ffn_norm):
        if fix.__name__ not in _applied and fix():
            _applied.append(fix.__name__)
    return list(_applied)
