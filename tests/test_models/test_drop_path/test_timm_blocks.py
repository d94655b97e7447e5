"""The efficient twin of timm's ViT Block equals timm's masked Block, draw
for draw; timm itself is the reference."""
import copy

import pytest
import torch

import cosub_mm  # noqa: F401  (before timm: the torchvision fix)
from cosub_mm.models.drop_path import (EFFICIENT_BLOCKS,
                                       enable_efficient_drop_path,
                                       is_efficient_block,
                                       set_drop_path_rates)

try:
    import timm
    from timm.layers import drop_path as timm_drop_path
    from timm.models.vision_transformer import Block
except ImportError:  # a test dependency: fail loudly, never skip
    pytest.fail('timm is not installed: it is a test dependency, run '
                '`pip install -r requirements/tests.txt`', pytrace=False)

IMG = 32
VARIANTS = ('deit3_small_patch16_224', 'vit_small_patch16_224')


def _timm(variant, **kw):
    torch.manual_seed(0)
    model = timm.create_model(variant, pretrained=False, img_size=IMG,
                              patch_size=8, embed_dim=32, depth=2,
                              num_heads=2, mlp_ratio=2.0, num_classes=0,
                              drop_path_rate=0.1, **kw)
    if variant.startswith('deit3'):
        with torch.no_grad():  # DeiT III's 1e-6 LayerScale hides branches
            for name, p in model.named_parameters():
                if name.endswith('gamma'):
                    p.fill_(0.5)
    return model


def _pair(variant, rate, **kw):
    masked = _timm(variant, **kw)
    set_drop_path_rates(masked, rate, 'uniform')
    efficient = copy.deepcopy(masked)
    assert enable_efficient_drop_path(efficient) == 2
    return masked, efficient


def _run(model, x, seed, train=True):
    """Tokens and parameter gradients of a fixed linear read-out."""
    model.train(train)
    model.zero_grad()
    torch.manual_seed(seed)
    out = model.forward_features(x).flatten(1)
    (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()
    return out.detach(), {k: p.grad.clone() for k, p in
                          model.named_parameters() if p.grad is not None}


def test_the_keep_mask_is_timms_own_draw():
    from cosub_mm.models.drop_path import timm_keep_mask
    x = torch.ones(64, 5, 3)
    for p in (0.1, 0.5, 0.9):
        torch.manual_seed(7)
        kept = timm_drop_path(x, p, training=True)[:, 0, 0] > 0
        torch.manual_seed(7)
        mask = timm_keep_mask(x, p)
        assert mask.dtype == torch.bool and torch.equal(mask, kept)
        assert 0 < int(mask.sum()) < 64


def test_timm_block_is_in_the_table():
    from cosub_mm.models.drop_path import EfficientTimmBlock
    assert EFFICIENT_BLOCKS[Block].twin is EfficientTimmBlock


@pytest.mark.parametrize('variant', VARIANTS)
@pytest.mark.parametrize('rate', [0.5, 0.999, 1e-7],
                         ids=['mixed', 'all-drop', 'none-drop'])
def test_efficient_equals_timms_masked_block_draw_for_draw(variant, rate):
    masked, efficient = _pair(variant, rate)
    assert all(is_efficient_block(b) for b in efficient.blocks)
    x = torch.randn(8, 3, IMG, IMG)
    out_m, grads_m = _run(masked, x, seed=3)
    out_e, grads_e = _run(efficient, x, seed=3)
    torch.testing.assert_close(out_e, out_m, rtol=1e-4, atol=1e-5)
    assert grads_e.keys() == grads_m.keys()
    for k in grads_m:
        torch.testing.assert_close(grads_e[k], grads_m[k], rtol=1e-3,
                                   atol=1e-5, msg=k)
    if rate == 0.5:  # a mixed draw: not the full network
        full, _ = _run(masked, x, seed=3, train=False)
        assert (out_m - full).abs().amax() > 1e-3


@pytest.mark.parametrize('variant', VARIANTS)
def test_eval_mode_and_checkpoint_keys_are_timms(variant):
    masked, efficient = _pair(variant, 0.5)
    x = torch.randn(4, 3, IMG, IMG)
    with torch.no_grad():
        assert torch.equal(efficient.eval()(x), masked.eval()(x))
    assert list(efficient.state_dict()) == list(masked.state_dict())


def test_an_attention_mask_takes_the_masked_form():
    masked, efficient = _pair(VARIANTS[0], 0.5)
    x = torch.randn(6, 17, 32)
    mask = torch.zeros(17, 17)
    mask[:, 5:] = float('-inf')  # attend to the first tokens only
    outs = []
    for model, attn_mask in ((masked, mask), (efficient, mask),
                             (efficient, None)):
        block = model.blocks[1].train()
        torch.manual_seed(4)
        outs.append(block(x, attn_mask=attn_mask))
    torch.testing.assert_close(outs[1], outs[0])
    assert (outs[2] - outs[0]).abs().amax() > 1e-3  # the mask mattered


def test_unscaled_drop_paths_keep_the_masked_block_with_a_warning():
    model = _timm(VARIANTS[0])
    set_drop_path_rates(model, 0.2, 'uniform')
    model.blocks[1].drop_path2.scale_by_keep = False
    with pytest.warns(UserWarning, match=r'blocks\.1 \(Block\)'):
        assert enable_efficient_drop_path(model) == 1
    assert [type(b).__name__ for b in model.blocks] == [
        'EfficientTimmBlock', 'Block']
