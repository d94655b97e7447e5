"""3-Augment of DeiT III (Touvron et al., *DeiT III: Revenge of the ViT*,
ECCV 2022), the data augmentation of the cosub recipes."""
from typing import Sequence, Tuple

from mmcv.transforms import RandomChoice, RandomGrayscale
from mmpretrain.datasets.transforms import GaussianBlur, Solarize

from cosub_mm.registry import TRANSFORMS

__all__ = ['ThreeAugment']


@TRANSFORMS.register_module()
class ThreeAugment(RandomChoice):
    """Apply one of grayscale, solarization or Gaussian blur, uniformly.

    Built from existing transforms, as DeiT III's ``augment.py`` does with
    torchvision/PIL:

    - grayscale: mmcv ``RandomGrayscale`` with ITU-R 601 luma weights, kept
      as 3 channels (PIL's ``convert('L')`` rounds, mmcv truncates: the two
      differ by at most one grey level);
    - solarization: mmpretrain ``Solarize`` inverting pixels >= 128 (PIL's
      ``ImageOps.solarize`` default);
    - Gaussian blur: mmpretrain ``GaussianBlur`` (PIL ``GaussianBlur``) with
      radius σ ~ U[0.1, 2].

    The image is BGR uint8 (mmcv's loading convention). Combine with
    ``ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3)`` after it,
    as the DeiT III recipe does.

    Args:
        solarize_thr (float): Solarization threshold. Defaults to 128.
        blur_sigma (tuple[float, float]): Range of the blur radius.
            Defaults to (0.1, 2.0).
        gray_weights (Sequence[float]): Channel weights in the image's
            channel order. Defaults to BGR luma (0.114, 0.587, 0.299).

    Example:
        >>> train_pipeline = [
        ...     dict(type='LoadImageFromFile'),
        ...     dict(type='RandomResizedCrop', scale=224),
        ...     dict(type='RandomFlip', prob=0.5),
        ...     dict(type='cosub_mm.ThreeAugment'),
        ...     dict(type='ColorJitter', brightness=0.3, contrast=0.3,
        ...          saturation=0.3),
        ...     dict(type='PackInputs')]
    """

    BRANCHES = ('grayscale', 'solarize', 'gaussian_blur')

    def __init__(self,
                 solarize_thr: float = 128,
                 blur_sigma: Tuple[float, float] = (0.1, 2.0),
                 gray_weights: Sequence[float] = (0.114, 0.587,
                                                  0.299)) -> None:
        low, high = blur_sigma
        if not 0 < low <= high:
            raise ValueError('ThreeAugment: blur_sigma must be (low, high) '
                             f'with 0 < low <= high, got {blur_sigma}')
        self.solarize_thr = solarize_thr
        self.blur_sigma = (float(low), float(high))
        self.gray_weights = tuple(gray_weights)
        grayscale = RandomGrayscale(
            prob=1.0, keep_channels=True, channel_weights=self.gray_weights)
        solarize = Solarize(thr=solarize_thr, prob=1.0)
        # magnitude_std='inf' draws U(0, magnitude_level), which the range
        # maps linearly onto U(low, high).
        blur = GaussianBlur(
            magnitude_range=self.blur_sigma,
            magnitude_level=10,
            total_level=10,
            magnitude_std='inf',
            prob=1.0)
        super().__init__(transforms=[[grayscale], [solarize], [blur]])

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(solarize_thr={self.solarize_thr}, '
                f'blur_sigma={self.blur_sigma}, '
                f'gray_weights={self.gray_weights})')
