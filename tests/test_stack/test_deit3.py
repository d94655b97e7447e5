"""cosub_mm.stack.deit3: DeiT III's FFN input normalised with ln2."""
import torch

import cosub_mm  # noqa: F401


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
