"""cosub_mm.stack.checkpoints: the error without each fix, the fix with it.

The 'without' halves run in fresh interpreters that never import cosub_mm, so
they fail if the stack stops needing the fix (then the fix should go).
"""
import os
import pickle

import pytest
import torch

import cosub_mm  # noqa: F401
from cosub_mm import fileio
from stack_helpers import run_python


def test_history_buffer_pickles_no_code_reference(tmp_path):
    from mmengine.logging import HistoryBuffer
    buf = HistoryBuffer()
    buf.update(1.5)
    assert b'getattr' not in pickle.dumps(buf)
    path = tmp_path / 'buf.pth'
    torch.save({'hub': buf}, path)
    loaded = fileio.safe_load(str(path))['hub']
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


def test_mmengine_loader_is_weights_only_except_in_resume(tmp_path):
    from mmengine.runner.checkpoint import CheckpointLoader
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'x': _Exploit(str(marker))}, path)
    with pytest.raises(fileio.UnsafeCheckpointError):
        CheckpointLoader.load_checkpoint(str(path))
    assert not marker.exists()
    with fileio.full_unpickling():
        CheckpointLoader.load_checkpoint(str(path))
    assert marker.exists()  # only inside the resume context


def test_last_checkpoint_pointer_is_replaced_atomically(tmp_path):
    """CheckpointHook's ``open(work_dir/last_checkpoint, 'w')`` writes a
    temporary file: readers see the old pointer until the rename."""
    from mmengine.hooks import checkpoint_hook
    pointer = tmp_path / 'last_checkpoint'
    pointer.write_text('/old/iter_2.pth')
    with checkpoint_hook.open(str(pointer), 'w') as f:
        f.write('/new/iter_4.pth')
        f.flush()
        assert pointer.read_text() == '/old/iter_2.pth'
    assert pointer.read_text() == '/new/iter_4.pth'
    assert os.listdir(tmp_path) == ['last_checkpoint']
    other = tmp_path / 'scalars.json'  # every other file: plain open
    with checkpoint_hook.open(str(other), 'w') as f:
        f.write('{}')
        f.flush()
        assert other.read_text() == '{}'
