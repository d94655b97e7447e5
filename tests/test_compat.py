"""Each stack fix of cosub_mm.compat: the error without it, the fix with it.

The 'without' halves run in fresh interpreters that never import cosub_mm, so
they fail if the stack stops needing the fix (then the fix should go).
"""
import pickle
import subprocess
import sys

import pytest
import torch

import cosub_mm
from cosub_mm import compat
from conftest import REPO, tool_env


def run_python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter from the repo root."""
    return subprocess.run([sys.executable, '-c', code], cwd=REPO,
                          env=tool_env(), capture_output=True, text=True,
                          timeout=120)


def test_import_cosub_mm_mmseg_mmpretrain_in_fresh_process():
    proc = run_python('import cosub_mm, mmseg, mmpretrain, torchvision\n'
                      'import mmseg.models, mmseg.utils, mmpretrain.models\n'
                      'print(sorted(cosub_mm.compat.apply_all()))')
    assert proc.returncode == 0, proc.stderr[-3000:]
    applied = eval(proc.stdout.strip().splitlines()[-1])
    expected = {'fix_history_buffer_pickling', 'fix_checkpoint_loading'}
    if torch.version.cuda is None:
        expected |= {'fix_torchvision_cpu_ops', 'fix_cpu_distributed'}
    assert expected <= set(applied)


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


def test_history_buffer_pickles_no_code_reference(tmp_path):
    from mmengine.logging import HistoryBuffer
    buf = HistoryBuffer()
    buf.update(1.5)
    assert b'getattr' not in pickle.dumps(buf)
    path = tmp_path / 'buf.pth'
    torch.save({'hub': buf}, path)
    loaded = compat.safe_load(str(path))['hub']
    assert loaded.current() == 1.5 and loaded.mean() == 1.5


def test_plain_mmengine_history_buffer_is_not_weights_only_loadable(tmp_path):
    path = tmp_path / 'buf.pth'
    proc = run_python(
        'import torch\n'
        'from mmengine.logging import HistoryBuffer\n'
        'b = HistoryBuffer(); b.update(1.0)\n'
        f'torch.save({{"hub": b}}, {str(path)!r})\n'
        f'torch.load({str(path)!r}, weights_only=True)')
    assert proc.returncode != 0
    assert 'weights_only' in proc.stderr or 'Weights only' in proc.stderr


class _Exploit:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


def test_safe_load_refuses_code_and_runs_nothing(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'x': _Exploit(str(marker))}, path)
    with pytest.raises(compat.UnsafeCheckpointError, match='evil.pth'):
        compat.safe_load(str(path))
    assert not marker.exists()


def test_mmengine_loader_is_weights_only_except_in_resume(tmp_path):
    from mmengine.runner.checkpoint import CheckpointLoader
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'x': _Exploit(str(marker))}, path)
    with pytest.raises(compat.UnsafeCheckpointError):
        CheckpointLoader.load_checkpoint(str(path))
    assert not marker.exists()
    with compat.full_unpickling():
        CheckpointLoader.load_checkpoint(str(path))
    assert marker.exists()  # only inside the resume context


def test_fixes_are_idempotent():
    assert compat.fix_torchvision_cpu_ops() is False
    assert compat.fix_mmcv_lite_ops() is False
    assert compat.fix_history_buffer_pickling() is False
    assert compat.fix_checkpoint_loading() is False
    assert compat.fix_cpu_distributed() is False
    assert compat.fix_deit3_ffn_norm() is False
    assert cosub_mm.__version__


def test_deit3_block_uses_ln2_for_the_ffn():
    from mmpretrain.models.backbones.deit3 import \
        DeiT3TransformerEncoderLayer
    torch.manual_seed(0)
    layer = DeiT3TransformerEncoderLayer(
        embed_dims=16, num_heads=2, feedforward_channels=32).eval()
    with torch.no_grad():
        layer.ln2.weight.fill_(3.0)  # ln1 keeps weight 1
    x = torch.randn(2, 5, 16)
    h = x + layer.attn(layer.ln1(x))
    expected = layer.ffn(layer.ln2(h), identity=h)
    torch.testing.assert_close(layer(x), expected)
    # The unfixed (mmpretrain 1.2.0) form differs: ln2 matters now.
    unfixed = layer.ffn(layer.ln1(h), identity=h)
    assert not torch.allclose(layer(x), unfixed)
    out = layer(x).sum()
    layer.train()
    layer(x).sum().backward()
    assert layer.ln2.weight.grad is not None
