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


def _hub_like():
    """What mmengine's message hub puts in a checkpoint: HistoryBuffers of
    numpy arrays, numpy scalars, OrderedDicts; plus a state_dict."""
    from collections import OrderedDict

    import numpy as np
    from mmengine.logging import HistoryBuffer
    buf = HistoryBuffer()
    for value in (0.6931471805599453, 0.5, 1 / 3):
        buf.update(value)
    state = OrderedDict(w=torch.randn(3))
    state._metadata = OrderedDict({'': {'version': 2}})
    return dict(
        state_dict=state,
        message_hub=dict(
            log_scalars=OrderedDict({'train/loss': buf}),
            runtime_info=OrderedDict(eta=np.float64(1 / 7), iter=4),
            resumed_keys=OrderedDict({'train/loss': True, 'eta': True})),
        meta=dict(
            arrays=[np.arange(6, dtype=t).reshape(2, 3) for t in
                    ('int64', 'uint8', 'float16', 'float32', 'float64')],
            flags=np.array([True, False]),
            names=np.array(['a', 'bc']),
            big_endian=np.arange(3, dtype='>i4'),
            scalars=(np.float32(0.1), np.int32(-3), np.bool_(True),
                     np.str_('s')),
            dtype=np.dtype('float16'),
            classes=('cat', 'dog'), tags={1, 2}))


def test_to_plain_loads_with_plain_torch_and_round_trips_bit_for_bit(
        tmp_path):
    import numpy as np
    from mmengine.logging import HistoryBuffer
    original = _hub_like()
    path = str(tmp_path / 'ckpt.pth')
    torch.save(original, path)
    with pytest.raises(Exception, match='Unsupported global'):
        torch.load(path, weights_only=True)  # mmengine's objects as they are

    torch.save(fileio.to_plain(original), path)
    plain = torch.load(path, weights_only=True)  # no allow-list at all
    back = fileio.from_plain(plain)
    buf, old = (back['message_hub']['log_scalars']['train/loss'],
                original['message_hub']['log_scalars']['train/loss'])
    assert type(buf) is HistoryBuffer and buf.max_length == old.max_length
    for attr in ('_log_history', '_count_history'):
        a, b = getattr(buf, attr), getattr(old, attr)
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert buf.mean() == old.mean()
    eta = back['message_hub']['runtime_info']['eta']
    assert type(eta) is np.float64 and eta == 1 / 7
    for a, b in zip(back['meta']['arrays'], original['meta']['arrays']):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    for key in ('flags', 'names', 'big_endian'):
        a, b = back['meta'][key], original['meta'][key]
        assert a.dtype == b.dtype and np.array_equal(a, b), key
    for a, b in zip(back['meta']['scalars'], original['meta']['scalars']):
        assert type(a) is type(b) and a == b
    assert back['meta']['dtype'] == np.dtype('float16')
    assert back['meta']['classes'] == ('cat', 'dog')
    assert back['meta']['tags'] == {1, 2}
    assert back['state_dict']._metadata == original['state_dict']._metadata
    assert torch.equal(back['state_dict']['w'], original['state_dict']['w'])


def test_to_plain_keeps_plain_objects_and_names_the_rest():
    original = _hub_like()
    unknown = []
    plain = fileio.to_plain(original, unknown)
    assert plain['state_dict'] is original['state_dict']  # not copied
    assert plain['meta']['classes'] is original['meta']['classes']
    assert not unknown
    odd = {'meta': {'hook': lambda: 0, 'ok': [1, 'x']}}
    assert fileio.to_plain(odd, unknown) is odd  # left as it is ...
    assert unknown == ["checkpoint['meta']['hook'] (builtins.function)"]


@pytest.mark.parametrize('entry', [
    {fileio.PLAIN_TAG: 'os.system', 'command': 'touch x'},
    {fileio.PLAIN_TAG: 'numpy.scalar', 'dtype': 'O', 'value': 1},
    {fileio.PLAIN_TAG: 'numpy.ndarray', 'dtype': '<f8'},
])
def test_from_plain_builds_only_the_data_types_it_writes(entry):
    with pytest.raises(ValueError, match=fileio.PLAIN_TAG):
        fileio.from_plain({'meta': {'x': entry}})


def test_safe_load_names_a_truncated_or_garbage_file(tmp_path):
    path = tmp_path / 'iter_4.pth'
    fileio.atomic_save({'w': torch.ones(1000)}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(RuntimeError,
                       match=f'Cannot read checkpoint {path}: it is '
                       'truncated or corrupt'):
        fileio.safe_load(str(path))
    path.write_bytes(b'not a checkpoint at all')
    with pytest.raises(fileio.UnsafeCheckpointError,
                       match='the file is not a zip checkpoint'):
        fileio.safe_load(str(path))
