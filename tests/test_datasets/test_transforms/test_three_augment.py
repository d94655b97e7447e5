"""ThreeAugment on a real photograph: each branch against PIL/numpy."""
from unittest import mock

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageFilter, ImageOps

import cosub_mm  # noqa: F401
from mmengine.registry import TRANSFORMS as ROOT_TRANSFORMS

from cosub_mm.datasets import ThreeAugment


@pytest.fixture(scope='module')
def rgb():
    """skimage's astronaut photo, 128x128 RGB uint8."""
    return np.ascontiguousarray(skimage.data.astronaut()[::4, ::4])


def _apply(t, rgb, branch):
    """Run one forced branch on the BGR image; return the RGB result."""
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    with mock.patch.object(t, 'random_pipeline_index', return_value=branch):
        out = t(dict(img=bgr.copy()))['img']
    assert out.shape == bgr.shape and out.dtype == np.uint8
    return out[..., ::-1]


def test_builds_from_config_by_scoped_name():
    t = ROOT_TRANSFORMS.build(dict(type='cosub_mm.ThreeAugment'))
    assert isinstance(t, ThreeAugment)
    assert len(t.transforms) == 3


def test_grayscale_branch_matches_pil_luma_in_three_channels(rgb):
    out = _apply(ThreeAugment(), rgb, 0)
    assert (out[..., 0] == out[..., 1]).all()
    assert (out[..., 1] == out[..., 2]).all()
    ref = np.asarray(Image.fromarray(rgb).convert('L')).astype(int)
    # PIL rounds, mmcv truncates: at most one grey level apart
    assert np.abs(out[..., 0].astype(int) - ref).max() <= 1
    assert np.abs(out[..., 0].astype(int) - ref).mean() < 0.6


def test_solarize_branch_inverts_pixels_from_128(rgb):
    out = _apply(ThreeAugment(), rgb, 1)
    ref = np.where(rgb >= 128, 255 - rgb, rgb)
    assert np.array_equal(out, ref)
    # PIL's ImageOps.solarize default (DeiT III's augment.py)
    pil = np.asarray(ImageOps.solarize(Image.fromarray(rgb)))
    assert np.array_equal(out, pil)


def test_blur_branch_is_pil_gaussian_blur_with_drawn_sigma(rgb):
    t = ThreeAugment()
    np.random.seed(3)
    np.random.rand()  # mmpretrain draws its prob gate (1.0) first
    u = np.random.uniform(0, 10)  # then the magnitude
    sigma = 0.1 + u / 10 * (2.0 - 0.1)
    np.random.seed(3)
    out = _apply(t, rgb, 2)
    ref = np.asarray(Image.fromarray(rgb).filter(
        ImageFilter.GaussianBlur(radius=sigma)))
    assert np.array_equal(out, ref)
    # and it is a real blur: less high-frequency energy than the input
    def tv(x):
        return np.abs(np.diff(x.astype(float), axis=1)).mean()
    assert tv(out) < 0.9 * tv(rgb)


def test_blur_sigma_is_uniform_between_0_1_and_2():
    blur = ThreeAugment().transforms[2].transforms[0]
    np.random.seed(0)
    s = np.array([blur.random_magnitude() for _ in range(4000)])
    assert s.min() >= 0.1 and s.max() <= 2.0
    assert s.min() < 0.15 and s.max() > 1.95
    # U[0.1, 2]: mean 1.05, std 1.9 / sqrt(12) = 0.548
    assert s.mean() == pytest.approx(1.05, abs=0.03)
    assert s.std() == pytest.approx(0.5485, abs=0.02)


def test_branches_are_chosen_uniformly(rgb):
    t = ThreeAugment()
    np.random.seed(0)
    idx = np.array([t.random_pipeline_index() for _ in range(6000)])
    freq = np.bincount(idx, minlength=3) / len(idx)
    assert freq == pytest.approx([1 / 3] * 3, abs=0.025)


def test_every_call_applies_exactly_one_branch(rgb):
    t = ThreeAugment()
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    np.random.seed(1)
    kinds = set()
    for _ in range(12):
        out = t(dict(img=bgr.copy()))['img']
        gray = (out[..., 0] == out[..., 1]).all() and (
            out[..., 1] == out[..., 2]).all()
        solar = np.array_equal(out, np.where(bgr >= 128, 255 - bgr, bgr))
        assert not np.array_equal(out, bgr)
        kinds.add('gray' if gray else 'solar' if solar else 'blur')
    assert kinds == {'gray', 'solar', 'blur'}


def test_rejects_bad_sigma_range():
    with pytest.raises(ValueError, match='blur_sigma'):
        ThreeAugment(blur_sigma=(2.0, 0.1))
