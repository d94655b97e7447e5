"""cosub_mm.stack.apply_all: the fixes in order, applied once each."""
import torch

import cosub_mm
from cosub_mm import stack
from stack_helpers import run_python


def test_import_cosub_mm_mmseg_mmpretrain_in_fresh_process():
    proc = run_python('import cosub_mm, mmseg, mmpretrain, torchvision\n'
                      'import mmseg.models, mmseg.utils, mmpretrain.models\n'
                      'print(sorted(cosub_mm.stack.apply_all()))')
    assert proc.returncode == 0, proc.stderr[-3000:]
    applied = eval(proc.stdout.strip().splitlines()[-1])
    expected = {'fix_history_buffer_pickling', 'fix_checkpoint_loading'}
    if torch.version.cuda is None:
        expected |= {'fix_torchvision_cpu_ops', 'fix_cpu_distributed'}
    assert expected <= set(applied)


def test_fixes_are_idempotent():
    assert stack.fix_torchvision_cpu_ops() is False
    assert stack.fix_mmcv_lite_ops() is False
    assert stack.fix_history_buffer_pickling() is False
    assert stack.fix_checkpoint_loading() is False
    assert stack.fix_cpu_distributed() is False
    assert stack.fix_deit3_ffn_norm() is False
    assert stack.fix_deit3_authors_init() is False
    assert cosub_mm.__version__
