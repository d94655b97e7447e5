"""cosub_mm.stack.distributed: the error without the fix, the fix with it.

Both halves run in fresh interpreters (a process group is process-wide); the
'without' half never imports cosub_mm, so it fails if the stack stops needing
the fix (then the fix should go).
"""
import subprocess
import sys

import pytest
import torch

from conftest import REPO, free_port, tool_env
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


LAUNCHED_RUN = """
import atexit, sys, time
import torch
import torch.distributed as dist
from cosub_mm.stack.distributed import finish_distributed_run
dist.init_process_group('gloo')
rank = dist.get_rank()
ddp = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 4))
ddp(torch.randn(2, 4)).sum().backward()
out = sys.argv[1]
atexit.register(
    lambda: open(f'{out}/atexit_{rank}', 'w').write(repr(time.time())))
if rank == 1:
    time.sleep(1.5)
sys.stdout.write(f'rank {rank} done\\n')
finish_distributed_run()
print('not reached')
"""


def test_finish_distributed_run_waits_for_the_ranks_and_keeps_their_output(
        tmp_path):
    """Both ranks leave together (the slower one is waited for), their atexit
    callbacks run and their output arrives; nothing after the call runs."""
    script = tmp_path / 'run.py'
    script.write_text(LAUNCHED_RUN)
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
         '2', '--master_port', str(free_port()), str(script), str(tmp_path)],
        cwd=REPO, env=tool_env(OMP_NUM_THREADS='1'), capture_output=True,
        text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'rank 0 done' in proc.stdout and 'rank 1 done' in proc.stdout
    assert 'not reached' not in proc.stdout
    ends = [float((tmp_path / f'atexit_{r}').read_text()) for r in (0, 1)]
    # rank 0 reached the call 1.5 s earlier and waited for rank 1
    assert abs(ends[0] - ends[1]) < 0.75


def test_finish_distributed_run_keeps_the_interpreter_outside_a_launch():
    proc = run_python(
        'from cosub_mm.stack.distributed import finish_distributed_run\n'
        'finish_distributed_run()\n'
        'print("still here")\n')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == 'still here'
