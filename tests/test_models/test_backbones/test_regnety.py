"""RegNetY against pycls/the paper (Radosavovic et al., CVPR 2020)."""
import pytest
import torch

import cosub_mm  # noqa: F401
from cosub_mm.models.backbones import RegNetY
from cosub_mm.models.drop_path import get_drop_path_rates


def _params_with_head(model: RegNetY, num_classes: int = 1000) -> int:
    return sum(p.numel() for p in model.parameters()) + model.feat_dim * (
        num_classes + 1)


# millions of parameters with the ImageNet head (paper Table 7 / pycls)
@pytest.mark.parametrize('arch,paper_m', [('regnety_4.0gf', 20.6),
                                          ('regnety_8.0gf', 39.2),
                                          ('regnety_16gf', 83.6)])
def test_parameter_count_matches_the_paper(arch, paper_m):
    with torch.device('meta'):
        model = RegNetY(arch)
    assert abs(_params_with_head(model) / 1e6 - paper_m) < 0.05


def test_4gf_stages_and_squeeze_excitation():
    with torch.device('meta'):
        model = RegNetY('regnety_4.0gf', drop_path_rate=0.1)
        out = model(torch.empty(2, 3, 224, 224))
    # pycls RegNetY-4.0GF: widths and depths per stage
    assert model.stage_widths == [128, 192, 512, 1088]
    assert model.stage_blocks == [2, 6, 12, 2]
    assert out[-1].shape == (2, 1088, 7, 7)
    first = model.layer2[0]  # 128 -> 192 channels
    assert first.se.fc1.weight.shape == (round(128 * 0.25), 192, 1, 1)
    assert model.layer2[1].se.fc1.weight.shape == (round(192 * 0.25), 192,
                                                   1, 1)
    rates = get_drop_path_rates(model)
    assert len(rates) == 22  # a DropPath in every block, rate 0 included
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.1)


def test_unknown_arch_is_refused():
    with pytest.raises(ValueError, match='regnety_4.0gf'):
        RegNetY('regnety_5gf')
