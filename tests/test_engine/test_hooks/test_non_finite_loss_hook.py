"""NonFiniteLossHook stops training on a NaN loss."""
import math
import os
import os.path as osp
import sys

from conftest import REPO, make_cls_dataset

# the training subprocess and its fault injection live with the
# reliability scenarios
sys.path.insert(0, osp.join(REPO, 'tests', 'test_reliability'))
from reliability_helpers import train, weights  # noqa: E402


def test_nan_loss_stops_training_and_keeps_last_good_checkpoint(tmp_path):
    data_root = make_cls_dataset(str(tmp_path / 'data'), per_class=4)
    work_dir = str(tmp_path / 'run')
    # the head becomes NaN before iteration 4, whose checkpoint would be
    # saved (interval 2)
    proc = train(work_dir, data_root, check=False, FAULT_NAN_AT_ITER='4')
    assert proc.returncode != 0
    err = proc.stderr
    assert 'NonFiniteLossError: Non-finite loss at iteration 4/6' in err
    assert 'loss=nan' in err and 'loss_label=nan' in err
    assert 'loss_distill=nan' in err
    assert f'Last good checkpoint: {osp.join(work_dir, "iter_2.pth")}' in err
    assert sorted(f for f in os.listdir(work_dir) if f.endswith('.pth')) \
        == ['iter_2.pth']
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read() == osp.join(work_dir, 'iter_2.pth')
    assert all(
        math.isfinite(v) for t in weights(osp.join(work_dir, 'iter_2.pth'))
        .values() for v in t.flatten().tolist())


def test_hook_names_each_term_and_ignores_non_loss_values():
    import pytest
    import torch
    from mmengine.logging import MessageHub

    from cosub_mm.engine.hooks import NonFiniteLossError, NonFiniteLossHook

    class FakeRunner:
        iter, epoch, max_iters = 9, 0, 100
        message_hub = MessageHub.get_instance('nonfinite_test')

    hook = NonFiniteLossHook()
    finite = dict(loss=torch.tensor(1.), loss_label=torch.tensor(.5),
                  loss_distill=torch.tensor(.5),
                  agreement=torch.tensor(float('nan')))
    hook.after_train_iter(FakeRunner(), 9, outputs=finite)  # no error
    bad = dict(finite, loss=torch.tensor(float('inf')),
               loss_distill=torch.tensor(float('inf')))
    with pytest.raises(NonFiniteLossError,
                       match=r'iteration 10/100 .*loss, loss_distill not '
                       r'finite \(loss=inf, loss_label=0.5, '
                       r'loss_distill=inf\)'):
        hook.after_train_iter(FakeRunner(), 9, outputs=bad)
