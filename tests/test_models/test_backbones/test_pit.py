"""PiT against the paper (Heo et al., ICCV 2021, Table 2)."""
import pytest
import torch

import cosub_mm  # noqa: F401
from cosub_mm.models.backbones import PiT
from cosub_mm.models.drop_path import get_drop_path_rates
from cosub_mm.registry import MODELS

from tiny_archs import TINY_ARCHS


def _params_with_head(model: PiT, num_classes: int = 1000) -> int:
    dims = model.embed_dims[-1]
    return sum(p.numel() for p in model.parameters()) + dims * (
        num_classes + 1)


# paper: millions of parameters (ImageNet head included)
@pytest.mark.parametrize('arch,paper_m', [('tiny', 4.9), ('xsmall', 10.6),
                                          ('small', 23.5), ('base', 73.8)])
def test_parameter_count_matches_the_paper(arch, paper_m):
    with torch.device('meta'):
        model = PiT(arch)
    # the paper rounds to 0.1 M; timm's PiT-Ti has 4.85 M
    assert abs(_params_with_head(model) / 1e6 - paper_m) < 0.06


def test_small_pools_27_to_14_to_7_tokens_and_doubles_width():
    with torch.device('meta'):
        model = PiT('small', out_type='featmap')
        grid = model(torch.empty(2, 3, 224, 224))[0]
        model.out_type = 'cls_token'
        cls = model(torch.empty(2, 3, 224, 224))[0]
    assert model.embed_dims == [144, 288, 576]
    assert model.pos_embed.shape == (1, 144, 27, 27)
    assert grid.shape == (2, 576, 7, 7) and cls.shape == (2, 576)
    # the pooling is depth-wise (one input channel per group) and the class
    # token goes through a linear map to the new width
    assert model.pools[0].conv.weight.shape == (288, 1, 3, 3)
    assert model.pools[0].fc.weight.shape == (288, 144)


def test_stochastic_depth_rates_grow_linearly_per_block():
    with torch.device('meta'):
        model = PiT('tiny', drop_path_rate=0.1)
    rates = get_drop_path_rates(model)
    assert len(rates) == 12
    torch.testing.assert_close(
        torch.tensor(rates), torch.linspace(0, 0.1, 12), atol=1e-6, rtol=0)


def test_class_token_sees_the_image():
    torch.manual_seed(0)
    model = MODELS.build(TINY_ARCHS['pit'][0])
    model.init_weights()
    model.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)[0]
    assert not torch.allclose(out[0], out[1], atol=1e-4)


def test_pretrained_init_cfg_loads_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    cfg = TINY_ARCHS['pit'][0]
    source = MODELS.build(cfg)
    source.init_weights()
    ckpt = tmp_path / 'pit.pth'
    torch.save(dict(state_dict=source.state_dict()), ckpt)
    target = MODELS.build(
        dict(cfg, init_cfg=dict(type='Pretrained', checkpoint=str(ckpt))))
    target.init_weights()
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k


def test_bad_arch_names_the_field():
    with pytest.raises(ValueError, match='arch'):
        PiT('huge')
    with pytest.raises(ValueError, match='img_size'):
        MODELS.build(TINY_ARCHS['pit'][0])(torch.rand(1, 3, 64, 64))
