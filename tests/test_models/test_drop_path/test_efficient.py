"""The efficient residual add equals the masked one, draw for draw, and
shares the branches of an image's identical copies."""
import pytest
import torch

from cosub_mm.models.drop_path import CopyTracker, drop_path_add, shared_copies


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


# --- shared copies: a branch computed once for an image's identical copies


def _linear_branch(seen):
    lin = torch.nn.Linear(5, 5)

    def branch(h):
        seen.append(h.shape[0])
        return torch.tanh(lin(h))

    return lin, branch


def _keep_mask(seed, rows, drop_prob):
    torch.manual_seed(seed)
    return (1 - drop_prob + torch.rand(rows, 1)).floor().view(-1).bool()


@pytest.mark.parametrize('k', [2, 3])
def test_shared_copies_compute_each_twin_branch_once(k):
    n, drop = 4, 0.4
    images = torch.randn(n, 5)
    keep = _keep_mask(7, k * n, drop).view(k, n)
    both = int(keep.all(0).sum())
    assert 0 < both < n  # a mixed draw: some images shared, some not

    def run(shared):
        a = images.clone().requires_grad_()
        seen = []
        lin, branch = _linear_branch(seen)
        torch.manual_seed(1)
        lin.reset_parameters()
        x = torch.cat([a] * k)
        torch.manual_seed(7)
        if shared:
            with shared_copies(k) as tracker:
                out = drop_path_add(x, branch, drop, True)
            assert (tracker.computed_rows, tracker.kept_rows) == (
                sum(seen), int(keep.sum()))
        else:
            out = drop_path_add(x, branch, drop, True)
        (out * torch.arange(out.numel()).view_as(out)).sum().backward()
        return out, a.grad, lin.weight.grad, sum(seen)

    out_s, ga_s, gw_s, rows_s = run(True)
    out_u, ga_u, gw_u, rows_u = run(False)
    assert rows_u == int(keep.sum())
    assert rows_s == rows_u - (k - 1) * both
    torch.testing.assert_close(out_s, out_u)
    torch.testing.assert_close(ga_s, ga_u)
    torch.testing.assert_close(gw_s, gw_u)


def test_copies_with_different_rows_are_not_shared():
    a, b = torch.randn(3, 5), torch.randn(3, 5)
    x = torch.cat([a, b])  # not copies, although declared as such
    seen = []
    _, branch = _linear_branch(seen)
    torch.manual_seed(0)
    with shared_copies(2) as tracker:
        out = drop_path_add(x, branch, 1e-9, True)
    assert seen == [6] and tracker.computed_rows == 6
    torch.testing.assert_close(out, x + branch(x))
    assert not tracker.twins.any()  # and never shared later


def test_tracker_forgets_twins_whose_decisions_differed():
    tracker = CopyTracker(2)
    x = torch.zeros(4, 3)  # equal values throughout, e.g. zero branches
    # image 0: copy 0 keeps, copy 1 drops -> no longer twins
    assert tracker.update(x, torch.tensor([1, 0, 0, 0]).bool(), True) \
        is None
    assert tracker.twins.tolist() == [False, True]
    shared = tracker.update(x, torch.ones(4, dtype=torch.bool), True)
    assert shared.tolist() == [False, True]


@pytest.mark.parametrize('drop', [0.05, 0.2])
def test_shared_compute_matches_the_twin_probability(drop):
    """Over L branches, copies stay twins with probability q^j before branch
    j (q = (1-p)^2 + p^2) and then both keep with (1-p)^2, so sharing
    computes ``sum_j 2n(1-p) - n(1-p)^2 q^j`` rows instead of ``2Ln(1-p)``.
    """
    n, branches = 4000, 24
    x = torch.zeros(2 * n, 1)
    torch.manual_seed(0)
    with shared_copies(2) as tracker:
        for _ in range(branches):
            x = drop_path_add(x, lambda h: h + 1, drop, True)
    keep = 1 - drop
    q = keep**2 + drop**2
    expected = sum(2 * n * keep - n * keep**2 * q**j
                   for j in range(branches))
    assert tracker.computed_rows == pytest.approx(expected, rel=0.01)
    assert tracker.kept_rows == pytest.approx(2 * n * keep * branches,
                                              rel=0.01)
    # the twins' rows really are equal, the others not
    rows = x.view(2, n)
    assert torch.equal(rows[0][tracker.twins], rows[1][tracker.twins])
    assert tracker.twins.sum() == pytest.approx(n * q**branches, abs=60)


def test_rate_zero_branches_are_shared_without_drawing():
    """Blocks at rate 0 (e.g. early blocks of the linear rule) keep every
    copy, so twins stay twins and the branch runs once per image; like
    DropPath, no random number is drawn for them."""
    images = torch.randn(3, 5)
    x = torch.cat([images] * 2)
    seen = []
    _, branch = _linear_branch(seen)
    state = torch.get_rng_state()
    with shared_copies(2) as tracker:
        out = drop_path_add(x, branch, 0.0, True)
    assert torch.equal(torch.get_rng_state(), state)
    assert seen == [3] and tracker.twins.all()
    torch.testing.assert_close(out, x + branch(x))
    # outside the context: the plain residual on every row
    seen.clear()
    drop_path_add(x, branch, 0.0, True)
    assert seen == [6]
