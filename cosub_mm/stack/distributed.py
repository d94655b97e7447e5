"""CPU-only distributed training with mmengine's launchers."""
import atexit
import contextlib
import os
import sys
from typing import Any, Callable, Iterator

import torch

__all__ = ['fix_cpu_distributed', 'finish_distributed_run']


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


def finish_distributed_run() -> None:
    """End a process of a launched (multi-process) run once its work is done.

    mmengine's runner leaves the process group to interpreter exit. There,
    a rank that exits while a peer still runs can abort with ``terminate
    called without an active exception`` after its work is done, and the
    launcher then reports the run as failed: DDP's C++ reducer keeps the
    gloo group and its worker threads alive even after
    ``destroy_process_group()``, and they are torn down with the
    interpreter. So the ranks first wait for each other, destroy the
    group, run the ``atexit`` callbacks (logging's flush among them) and
    leave without interpreter teardown.

    Does nothing (and returns) outside a distributed run, so that
    in-process callers such as the tests keep their interpreter.
    """
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    dist.destroy_process_group()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)
