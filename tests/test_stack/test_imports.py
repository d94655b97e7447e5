"""cosub_mm.stack.imports: the error without each fix, the fix with it.

The 'without' halves run in fresh interpreters that never import cosub_mm, so
they fail if the stack stops needing the fix (then the fix should go).
"""
import pytest
import torch

import cosub_mm  # noqa: F401
from stack_helpers import run_python


@pytest.mark.skipif(torch.version.cuda is not None,
                    reason='the torchvision fix only applies to CPU torch')
def test_torchvision_import_fails_without_fix_and_works_with_it():
    without = run_python('import torchvision')
    assert without.returncode != 0
    assert 'torchvision::nms does not exist' in without.stderr
    with_fix = run_python(
        'import cosub_mm, torchvision, torch\n'
        'print(torch._C._dispatch_has_kernel("torchvision::nms") or '
        'hasattr(torch.ops.torchvision, "nms"))')
    assert with_fix.returncode == 0, with_fix.stderr[-2000:]
    assert with_fix.stdout.strip().endswith('True')


def test_mmseg_utils_needs_mmcv_ops_stand_in():
    without = run_python('import mmseg.utils')
    assert without.returncode != 0
    assert "No module named 'mmcv._ext'" in without.stderr
    assert run_python('import cosub_mm, mmseg.utils').returncode == 0


def test_stand_in_point_sample_matches_grid_sample():
    from mmcv.ops import point_sample
    feats = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    points = torch.rand(2, 7, 2)
    out = point_sample(feats, points, align_corners=False)
    ref = torch.nn.functional.grid_sample(
        feats, 2 * points.unsqueeze(2) - 1, align_corners=False).squeeze(3)
    torch.testing.assert_close(out, ref)


def test_stand_in_missing_op_raises_module_not_found_with_hint():
    with pytest.raises(ModuleNotFoundError, match='mmcv-lite'):
        from mmcv.ops import nms  # noqa: F401
    from mmcv.ops import sigmoid_focal_loss
    with pytest.raises(RuntimeError, match='compiled ops'):
        sigmoid_focal_loss(torch.zeros(1), torch.zeros(1))
