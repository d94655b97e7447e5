"""cosub_mm.stack.checkpoints: the error without each fix, the fix with it.

The 'without' halves run in fresh interpreters that never import cosub_mm, so
they fail if the stack stops needing the fix (then the fix should go).
"""
import os
import pickle

import numpy as np
import pytest
import torch

import cosub_mm  # noqa: F401
from cosub_mm import fileio
from cosub_mm.stack import checkpoints
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


def test_mmengine_loader_is_weights_only_outside_full_unpickling(tmp_path):
    from mmengine.runner.checkpoint import CheckpointLoader
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'x': _Exploit(str(marker))}, path)
    with pytest.raises(fileio.UnsafeCheckpointError):
        CheckpointLoader.load_checkpoint(str(path))
    assert not marker.exists()
    with fileio.full_unpickling():
        CheckpointLoader.load_checkpoint(str(path))
    assert marker.exists()  # only inside the resume_unsafe opt-in


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


def test_new_fixes_are_idempotent():
    assert checkpoints.fix_plain_checkpoints() is False
    assert checkpoints.fix_resume() is False


def test_mmengine_checkpoint_is_plain_and_loads_back_as_it_was(tmp_path):
    """mmengine's save_checkpoint writes plain containers (plain torch.load
    in a fresh interpreter that imports neither mmengine nor cosub_mm);
    CheckpointLoader gives the message hub back as it was."""
    from mmengine.logging import MessageHub
    from mmengine.runner.checkpoint import CheckpointLoader, save_checkpoint
    hub = MessageHub('test_plain_checkpoint')
    for loss in (0.75, 0.5, 0.25):
        hub.update_scalar('train/loss', loss)
    hub.update_info('eta', np.float64(12.5))
    path = str(tmp_path / 'iter_3.pth')
    save_checkpoint({'meta': {'iter': 3}, 'message_hub': hub.state_dict(),
                     'state_dict': {'w': torch.ones(2)}}, path)
    proc = run_python(
        'import sys, torch\n'
        f'c = torch.load({path!r})\n'
        'print(c["message_hub"]["runtime_info"]["eta"]["value"])\n'
        'assert not [m for m in sys.modules if m.startswith(("mmengine", '
        '"cosub_mm"))]')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ['12.5']

    loaded = CheckpointLoader.load_checkpoint(path)['message_hub']
    restored = MessageHub('test_plain_checkpoint_restored')
    restored.load_state_dict(loaded)
    a, b = (restored.get_scalar('train/loss'), hub.get_scalar('train/loss'))
    assert np.array_equal(a.data[0], b.data[0]) and \
        a.data[0].dtype == b.data[0].dtype
    assert restored.get_info('eta') == 12.5
    assert type(restored.get_info('eta')) is np.float64


def test_plain_checkpoints_warn_about_objects_without_a_plain_form(tmp_path):
    from mmengine.logging import MMLogger
    from mmengine.runner.checkpoint import save_checkpoint
    path = str(tmp_path / 'odd.pth')
    logger = MMLogger.get_instance('test_plain_warning')
    records = []
    with pytest.MonkeyPatch.context() as mp:  # print_log(logger='current')
        mp.setattr(logger, 'log', lambda level, msg, *a, **k:
                   records.append(msg))
        mp.setattr(MMLogger, 'get_current_instance',
                   classmethod(lambda cls: logger))
        save_checkpoint({'meta': {'fn': len}}, path)
    assert any(f'Checkpoint {path} holds objects without a plain form: '
               "checkpoint['meta']['fn'] (builtins.builtin_function_or_"
               'method)' in str(r) for r in records), records
    with pytest.raises(fileio.UnsafeCheckpointError):
        fileio.safe_load(path)


def _pointer(folder, text):
    (folder / 'last_checkpoint').write_bytes(text)
    return str(folder / 'last_checkpoint')


@pytest.mark.parametrize('content', [b'', b'   \n', b'/no/such/iter_4.pth',
                                     b'\x00\xff\xfe garbage'])
def test_damaged_pointer_is_refused_naming_it_and_the_newest_checkpoint(
        tmp_path, content):
    good = tmp_path / 'iter_2.pth'
    fileio.atomic_save({'w': torch.ones(1)}, str(good))
    (tmp_path / 'iter_4.pth').write_bytes(b'torn')  # not a complete file
    pointer = _pointer(tmp_path, content)
    with pytest.raises(FileNotFoundError) as err:
        checkpoints.find_latest_checkpoint(str(tmp_path))
    message = str(err.value)
    assert f'the checkpoint pointer {pointer} is damaged' in message
    assert f'--resume {good}' in message
    (tmp_path / 'last_checkpoint').unlink()  # no pointer: a new run
    assert checkpoints.find_latest_checkpoint(str(tmp_path)) is None
    _pointer(tmp_path, str(good).encode())
    assert checkpoints.find_latest_checkpoint(str(tmp_path)) == str(good)


def test_runner_resume_uses_the_pointer_check():
    from mmengine.runner import runner as runner_module
    assert runner_module.find_latest_checkpoint is \
        checkpoints.find_latest_checkpoint


def test_check_resume_weights_lists_what_differs():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    own = model.state_dict()
    checkpoints.check_resume_weights(  # a wrapper's 'module.' prefix is fine
        model, {'state_dict': {'module.' + k: v for k, v in own.items()}},
        'ok.pth')
    state = dict(own, extra=torch.zeros(1))
    state['0.weight'] = torch.zeros(5, 3)
    del state['1.bias'], state['1.num_batches_tracked']
    with pytest.raises(ValueError) as err:
        checkpoints.check_resume_weights(model, {'state_dict': state},
                                         'other.pth')
    message = str(err.value)
    assert message.startswith('Cannot resume from other.pth: its weights do '
                              'not match the model Sequential')
    assert 'Shape mismatches: 0.weight (5, 3) in the file vs (4, 3) in ' \
        'the model. Missing keys: 1.bias. Unexpected keys: extra.' in message
