"""cosub_mm.stack.input_channels: a gray patch embedding in an RGB model."""
import pytest
import torch
from mmengine.registry import DefaultScope

import cosub_mm  # noqa: F401
from cosub_mm import stack
from cosub_mm.stack.input_channels import adapt_input_channels

LUMA_RGB = torch.tensor([0.299, 0.587, 0.114])


def _vit(in_channels: int, init_cfg=None):
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(
            type='VisionTransformer',
            arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                      feedforward_channels=64),
            img_size=28, patch_size=7, in_channels=in_channels,
            init_cfg=init_cfg))
    model.eval()  # mmpretrain's ViT.train returns None
    return model


def test_rgb_model_from_gray_checkpoint_is_the_gray_model_on_luma():
    torch.manual_seed(0)
    gray = _vit(1)
    gray.init_weights()
    rgb = _vit(3)
    rgb.load_state_dict(gray.state_dict())
    image = torch.rand(2, 3, 28, 28)
    luma = (image * LUMA_RGB.view(1, 3, 1, 1)).sum(1, keepdim=True)
    with torch.no_grad():
        torch.testing.assert_close(rgb(image)[0], gray(luma)[0],
                                   rtol=1e-5, atol=1e-5)


def test_pretrained_init_cfg_adapts_and_keeps_pos_embed(tmp_path):
    torch.manual_seed(1)
    gray = _vit(1)
    gray.init_weights()
    ckpt = str(tmp_path / 'classifier.pth')
    torch.save({'state_dict': {f'backbone.{k}': v
                               for k, v in gray.state_dict().items()}}, ckpt)
    rgb = _vit(3, dict(type='Pretrained', checkpoint=ckpt,
                       prefix='backbone.'))
    rgb.init_weights()
    kernel = gray.patch_embed.projection.weight
    torch.testing.assert_close(rgb.patch_embed.projection.weight,
                               kernel * LUMA_RGB.view(1, 3, 1, 1))
    assert torch.equal(rgb.pos_embed, gray.pos_embed)
    assert torch.equal(rgb.layers[1].ffn.layers[1].weight,
                       gray.layers[1].ffn.layers[1].weight)


def test_gray_model_from_rgb_checkpoint_sums_the_kernels():
    torch.manual_seed(2)
    rgb = _vit(3)
    rgb.init_weights()
    gray = _vit(1)
    gray.load_state_dict(rgb.state_dict())
    image = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(gray(image)[0],
                                   rgb(image.expand(-1, 3, -1, -1))[0],
                                   rtol=1e-5, atol=1e-5)


def test_same_channels_load_unchanged_and_other_counts_refused():
    torch.manual_seed(3)
    a, b = _vit(3), _vit(3)
    a.init_weights()
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.patch_embed.projection.weight,
                       b.patch_embed.projection.weight)
    with pytest.raises(ValueError, match='2 input channels to 3'):
        adapt_input_channels(torch.zeros(4, 2, 3, 3), 3)
    # a 2-channel checkpoint is left to torch's size-mismatch error
    state = a.state_dict()
    state['patch_embed.projection.weight'] = torch.zeros(32, 2, 7, 7)
    with pytest.raises(RuntimeError, match='size mismatch'):
        _vit(3).load_state_dict(state)


def test_mmpretrain_patch_embed_gets_the_rule_too():
    from mmpretrain.models.utils.embed import PatchEmbed
    gray = PatchEmbed(img_size=28, in_channels=1, embed_dims=8,
                      conv_cfg=dict(type='Conv2d', kernel_size=7, stride=7))
    rgb = PatchEmbed(img_size=28, in_channels=3, embed_dims=8,
                     conv_cfg=dict(type='Conv2d', kernel_size=7, stride=7))
    rgb.load_state_dict(gray.state_dict())
    torch.testing.assert_close(
        rgb.projection.weight,
        gray.projection.weight * LUMA_RGB.view(1, 3, 1, 1))
    assert stack.fix_patch_embed_input_channels() is False  # idempotent
