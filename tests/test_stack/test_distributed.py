"""cosub_mm.stack.distributed: the error without the fix, the fix with it.

Both halves run in fresh interpreters (a process group is process-wide); the
'without' half never imports cosub_mm, so it fails if the stack stops needing
the fix (then the fix should go).
"""
import pytest
import torch

from stack_helpers import run_python

INIT_DIST = (
    'import os, socket\n'
    's = socket.socket(); s.bind(("127.0.0.1", 0))\n'
    'port = s.getsockname()[1]; s.close()\n'
    'os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),\n'
    '                  RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")\n'
    'from mmengine.dist import init_dist\n'
    'import torch.distributed as dist\n'
    'init_dist("pytorch", backend="nccl")\n'
    'print(dist.get_backend())\n')


@pytest.mark.skipif(torch.cuda.is_available(),
                    reason='the fix only applies without CUDA')
def test_init_dist_fails_on_cpu_without_fix_and_uses_gloo_with_it():
    without = run_python(INIT_DIST)
    assert without.returncode != 0
    assert "has no attribute '_cuda_setDevice'" in without.stderr
    with_fix = run_python('import cosub_mm\n' + INIT_DIST)
    assert with_fix.returncode == 0, with_fix.stderr[-2000:]
    assert with_fix.stdout.strip().splitlines()[-1] == 'gloo'


def test_close_process_group_destroys_a_launched_group_once():
    proc = run_python(
        'import cosub_mm\n' + INIT_DIST +
        'from cosub_mm.stack.distributed import close_process_group\n'
        'print(close_process_group(), dist.is_initialized(),\n'
        '      close_process_group())\n')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == 'True False False'
