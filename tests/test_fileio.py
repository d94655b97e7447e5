"""cosub_mm.fileio: weights-only loading that runs no code, atomic writes."""
import os

import pytest
import torch

from cosub_mm import fileio


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
    with pytest.raises(fileio.UnsafeCheckpointError, match='evil.pth'):
        fileio.safe_load(str(path))
    assert not marker.exists()


def test_atomic_writes_replace_the_file_and_leave_no_temporary(tmp_path):
    path = tmp_path / 'sub' / 'iter_1.pth'
    fileio.atomic_save({'w': torch.ones(2)}, str(path))
    fileio.atomic_save({'w': torch.zeros(2)}, str(path))
    assert fileio.safe_load(str(path))['w'].tolist() == [0.0, 0.0]
    fileio.atomic_write_text('iter_1.pth', str(tmp_path / 'last_checkpoint'))
    assert (tmp_path / 'last_checkpoint').read_text() == 'iter_1.pth'
    assert not [p for p in tmp_path.rglob('*.tmp')]


def test_atomic_save_keeps_old_file_when_writer_fails(tmp_path, monkeypatch):
    """An exception mid-write leaves the previous file intact and no
    temporary file behind (the subprocess kill mid-save is in
    tests/test_reliability/test_resume_exact_and_atomic.py)."""
    target = str(tmp_path / 'ckpt.pth')
    fileio.atomic_save({'w': torch.ones(3)}, target)

    def broken_save(obj, f, *args, **kwargs):
        f.write(b'partial')
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', broken_save)
    with pytest.raises(OSError, match='disk full'):
        fileio.atomic_save({'w': torch.zeros(3)}, target)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ['ckpt.pth']
    assert torch.equal(
        torch.load(target, weights_only=True)['w'], torch.ones(3))
