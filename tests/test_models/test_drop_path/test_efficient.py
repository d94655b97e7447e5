"""The efficient residual add equals the masked one, draw for draw (the
planned form and the sharing of copies: ``test_plan.py``)."""
import torch

from cosub_mm.models.drop_path import drop_path_add


def test_branch_runs_only_on_kept_rows():
    x = torch.randn(6, 5, requires_grad=True)
    seen = []

    def branch(h):
        seen.append(h.shape[0])
        return 2 * h

    torch.manual_seed(0)
    keep = (0.5 + torch.rand(6, 1)).floor().view(-1).bool()
    torch.manual_seed(0)
    out = drop_path_add(x, branch, 0.5, training=True)
    assert seen == [int(keep.sum())] and 0 < seen[0] < 6
    expected = x + torch.where(keep[:, None], 2 * x / 0.5, 0)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.where(keep[:, None], 5.0, 1.0)
                               .expand(6, 5))


def test_every_sample_dropping_gives_zero_gradients_like_masked():
    x = torch.randn(4, 5)
    lin = torch.nn.Linear(5, 5)
    rows = []
    torch.manual_seed(0)
    out = drop_path_add(x, lambda h: rows.append(len(h)) or lin(h), 0.9999,
                        True)
    assert rows == [1] and torch.equal(out, x)  # one row, times zero
    out.sum().backward()
    # zeros, not None: AdamW then decays and moves them as in the masked
    # form, and DDP sees every parameter used
    assert torch.equal(lin.weight.grad, torch.zeros(5, 5))
    # no sample drops: the whole batch, scaled by 1 / keep_prob
    out = drop_path_add(x, lambda h: 3 * h, 1e-9, True)
    torch.testing.assert_close(out, x + 3 * x / (1 - 1e-9))
    # eval: the plain residual
    assert torch.equal(drop_path_add(x, lambda h: 3 * h, 0.5, False),
                       x + 3 * x)
