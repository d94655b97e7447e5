"""cosub_mm.stack.deit3: DeiT III's FFN input normalised with ln2, and the
authors' FFN-Linear / cls_token init (``cosub_mm.DeiT3AuthorsInit``)."""
import math

import pytest
import torch
from mmengine.registry import DefaultScope
from torch import nn

import cosub_mm  # noqa: F401
from cosub_mm import stack


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


# ---------------------------------------------------------------------------
# The authors' init: facebookresearch/deit models_v2.py vit_models,
# trunc_normal_(std=.02) for every Linear (bias 0) and for cls_token.
STD = 0.02
EMBED, HIDDEN = 64, 128
TINY = dict(embed_dims=EMBED, num_layers=2, num_heads=2,
            feedforward_channels=HIDDEN)
# Xavier-uniform of a C x 2C / 2C x C Linear (gain 1): what mmpretrain's
# init_weights gives the FFN Linears
XAVIER_STD = math.sqrt(2.0 / (EMBED + HIDDEN))
XAVIER_BOUND = math.sqrt(6.0 / (EMBED + HIDDEN))
# the configs' other models_v2.py inits, as in configs/cosub/deit3-*.py
PLAIN_INIT = [
    dict(type='TruncNormal', layer='Linear', std=STD),
    dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
]
AUTHORS_INIT = PLAIN_INIT + [dict(type='cosub_mm.DeiT3AuthorsInit')]


def _deit3(init_cfg, scope='mmpretrain', seed=0, efficient=False):
    from mmengine.registry import MODELS
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope(scope):
        backbone = MODELS.build(
            dict(type='mmpretrain.DeiT3', arch=TINY, img_size=32,
                 patch_size=8, init_cfg=init_cfg))
        if efficient:
            from cosub_mm.models.drop_path import enable_efficient_drop_path
            assert enable_efficient_drop_path(backbone) == 2
        backbone.init_weights()
    return backbone


def _ffn_linears(backbone):
    linears = [m for layer in backbone.layers for m in layer.ffn.modules()
               if isinstance(m, nn.Linear)]
    assert len(linears) == 2 * TINY['num_layers']
    return linears


def _kurtosis(w: torch.Tensor) -> float:
    w = w.flatten().double()
    z = (w - w.mean()) / w.std()
    return z.pow(4).mean().item()


def _assert_authors_ffn(backbone):
    for fc in _ffn_linears(backbone):
        w = fc.weight.detach()
        assert w.numel() == EMBED * HIDDEN  # 8192: std error about 0.8 %
        std = w.std().item()
        assert abs(std - STD) < 0.15 * STD, std
        assert std < XAVIER_STD / 3, (std, XAVIER_STD)  # Xavier: 0.102
        assert abs(w.mean().item()) < 0.1 * STD
        # a normal, not Xavier's uniform (kurtosis 3 vs 1.8; std error of
        # the estimate about 0.05 here)
        assert 2.6 < _kurtosis(w) < 3.4
        # trunc_normal_ (timm's, torch's, mmengine's) truncates at [a, b] =
        # [-2, 2] absolute, i.e. 100 std here: effectively untruncated, so
        # about 4.55 % of the weights lie beyond 2 std (not 0 %)
        assert w.abs().max().item() <= 2.0
        beyond = (w.abs() > 2 * STD).double().mean().item()
        assert 0.035 < beyond < 0.056, beyond
        assert torch.all(fc.bias == 0)


def _assert_authors_cls_token(backbone):
    token = backbone.cls_token.detach()
    assert token.shape == (1, 1, EMBED)
    assert torch.count_nonzero(token) == EMBED
    # 64 values: std error about 9 %, so 40 % is over 4 standard errors
    assert abs(token.std().item() - STD) < 0.4 * STD, token.std().item()
    assert token.abs().max().item() <= 2.0


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmseg'])
def test_authors_init_gives_trunc_normal_ffn_and_cls_token(scope):
    backbone = _deit3(AUTHORS_INIT, scope=scope)
    _assert_authors_ffn(backbone)
    _assert_authors_cls_token(backbone)


def test_authors_init_on_the_classifier_reaches_the_backbone():
    # where the configs put it: the ImageClassifier's init_cfg runs before
    # the layers' init_weights, which re-initialise the FFN with Xavier
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='DeiT3', arch=TINY, img_size=32, patch_size=8),
            head=dict(type='VisionTransformerClsHead', num_classes=10,
                      in_channels=EMBED),
            init_cfg=AUTHORS_INIT))
    torch.manual_seed(0)
    model.init_weights()
    _assert_authors_ffn(model.backbone)
    _assert_authors_cls_token(model.backbone)


def test_authors_init_reaches_efficient_drop_path_twins():
    backbone = _deit3(AUTHORS_INIT, efficient=True)
    _assert_authors_ffn(backbone)
    _assert_authors_cls_token(backbone)


def test_authors_init_leaves_the_rest_to_the_other_init_cfgs():
    plain, authors = _deit3(PLAIN_INIT), _deit3(AUTHORS_INIT)
    for backbone in (plain, authors):
        qkv = backbone.layers[0].attn.qkv
        assert abs(qkv.weight.std().item() - STD) < 0.15 * STD
        assert torch.all(qkv.bias == 0)
        # mmpretrain's own trunc-normal pos_embed
        assert abs(backbone.pos_embed.std().item() - STD) < 0.15 * STD


def test_without_authors_init_mmpretrain_init_is_unchanged():
    from mmpretrain.models.backbones.deit3 import \
        DeiT3TransformerEncoderLayer as Layer
    patched = Layer.init_weights
    assert patched._cosub_mm_fix
    backbone = _deit3(PLAIN_INIT)
    # Xavier-uniform FFN Linears, bias normal(1e-6), a zero class token
    for fc in _ffn_linears(backbone):
        w = fc.weight.detach()
        assert abs(w.std().item() - XAVIER_STD) < 0.15 * XAVIER_STD
        assert w.abs().max().item() <= XAVIER_BOUND
        assert 1.6 < _kurtosis(w) < 2.0
        assert torch.count_nonzero(fc.bias) > 0
        assert fc.bias.abs().max().item() < 1e-5
    assert torch.all(backbone.cls_token == 0)
    # bit for bit what mmpretrain's own init_weights gives
    try:
        Layer.init_weights = patched.__wrapped__
        unpatched = _deit3(PLAIN_INIT)
    finally:
        Layer.init_weights = patched
    expected = unpatched.state_dict()
    for name, value in backbone.state_dict().items():
        assert torch.equal(value, expected[name]), name


def test_authors_init_leaves_a_model_without_deit3_alone():
    # e.g. a config inheriting a DeiT III recipe with another backbone
    from mmengine.model import initialize
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(UserWarning, match='no mmpretrain DeiT3'):
        initialize(model, dict(type='cosub_mm.DeiT3AuthorsInit'))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_authors_init_fix_is_guarded_and_applied_once():
    from mmpretrain.models.backbones.deit3 import \
        DeiT3TransformerEncoderLayer as Layer
    assert 'fix_deit3_authors_init' in stack.apply_all()
    assert stack.fix_deit3_authors_init() is False
    assert stack.fix_deit3_authors_init in stack.FIXES
    assert Layer.init_weights.__wrapped__.__qualname__.startswith(
        'DeiT3TransformerEncoderLayer')
