"""Fashion scenes: a small real-pixel segmentation set in ADE20k layout.

Written by ``tools/dataset_converters/make_fashion_scenes.py``: backgrounds
are crops of the texture photographs bundled with scikit-image (each texture
its own *stuff* class) and Fashion-MNIST items are pasted on them with their
own pixel masks (each clothing class a *thing* class). Images are RGB JPEG:
the gray photographs and items are tinted with their luma kept, so a
backbone pretrained on grayscale Fashion-MNIST starts from what it knows
(see ``cosub_mm.Pretrained`` for its input layer).

Label maps follow ADE20k: ``0`` means *other* — here the soft rim of a
pasted item whose pixels blend item and background, so its class is
ambiguous — and the classes are ``1..15``. With ``reduce_zero_label=True``
(the default, as for ADE20k) ``0`` becomes the ignore index 255 and the
classes ``0..14``, in the order of ``METAINFO['classes']``.
"""
from typing import Tuple

from mmseg.datasets import BaseSegDataset

from cosub_mm.registry import DATASETS

__all__ = ['FashionScenesDataset', 'STUFF_TEXTURES', 'THING_CLASSES']

# (class name, scikit-image ``skimage.data`` function): the stuff classes.
STUFF_TEXTURES: Tuple[Tuple[str, str], ...] = (
    ('brick', 'brick'),
    ('grass', 'grass'),
    ('gravel', 'gravel'),
    ('lunar surface', 'moon'),
    ('starfield', 'hubble_deep_field'),
)
# Fashion-MNIST's ten classes, in label order: the thing classes.
THING_CLASSES: Tuple[str, ...] = ('T-shirt/top', 'trouser', 'pullover',
                                  'dress', 'coat', 'sandal', 'shirt',
                                  'sneaker', 'bag', 'ankle boot')


@DATASETS.register_module()
class FashionScenesDataset(BaseSegDataset):
    """Fashion scenes in ADE20k layout (``images/{training,validation}`` and
    ``annotations/{training,validation}``).

    Args:
        img_suffix (str): Defaults to '.jpg'.
        seg_map_suffix (str): Defaults to '.png'.
        reduce_zero_label (bool): Map label 0 (*other*: ambiguous item rims)
            to the ignore index and shift the 15 classes to 0..14, as
            ADE20k. Defaults to True.
        **kwargs: The arguments of mmseg's ``BaseSegDataset``.

    Example:
        >>> dataset = dict(
        ...     type='cosub_mm.FashionScenesDataset',
        ...     data_root='data/fashion_scenes',
        ...     data_prefix=dict(img_path='images/validation',
        ...                      seg_map_path='annotations/validation'),
        ...     pipeline=test_pipeline)
    """
    METAINFO = dict(
        classes=tuple(name for name, _ in STUFF_TEXTURES) + THING_CLASSES,
        palette=[[150, 70, 50], [60, 170, 60], [140, 140, 120],
                 [200, 200, 210], [20, 20, 90], [230, 60, 60],
                 [60, 90, 230], [240, 160, 30], [200, 40, 200],
                 [40, 210, 210], [250, 240, 60], [120, 60, 200],
                 [255, 130, 180], [110, 80, 20], [0, 120, 110]])

    def __init__(self,
                 img_suffix: str = '.jpg',
                 seg_map_suffix: str = '.png',
                 reduce_zero_label: bool = True,
                 **kwargs) -> None:
        super().__init__(
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=reduce_zero_label,
            **kwargs)
