"""CPU-only distributed training with mmengine's launchers."""
import contextlib
from typing import Any, Callable, Iterator

import torch

__all__ = ['fix_cpu_distributed', 'close_process_group']


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


def close_process_group() -> bool:
    """Destroy the default process group at the end of a launched run.

    mmengine's runner leaves it to interpreter exit, where gloo's worker
    threads may still be joinable when their destructors run: the process
    then aborts with ``terminate called without an active exception`` after
    the work is done, and the launcher reports the rank as failed.

    Returns:
        bool: Whether a process group was destroyed.
    """
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return False
    dist.destroy_process_group()
    return True
