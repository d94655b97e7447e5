"""A pipeline step that validates segmentation label maps."""
from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform

from cosub_mm.registry import TRANSFORMS

__all__ = ['CheckSegAnnotation']


@TRANSFORMS.register_module()
class CheckSegAnnotation(BaseTransform):
    """Check a loaded label map against its image and the class count.

    mmseg 1.2.2 does not check label maps: ids >= ``num_classes`` surface
    later as ``IndexError: Target 7 is out of bounds`` inside the loss (or as
    silently wrong metrics), and a label map whose size differs from its
    image is cropped out of alignment. This step raises an error naming the
    file instead. Put it right after ``LoadAnnotations``.

    Args:
        num_classes (int): Number of classes; valid ids are
            ``0..num_classes-1`` after ``reduce_zero_label``.
        ignore_index (int): The id that marks unlabelled pixels. Defaults
            to 255.

    Example:
        >>> train_pipeline = [
        ...     dict(type='LoadImageFromFile'),
        ...     dict(type='LoadAnnotations', reduce_zero_label=True),
        ...     dict(type='cosub_mm.CheckSegAnnotation', num_classes=150),
        ...     ...]
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError('CheckSegAnnotation: num_classes must be a '
                             f'positive integer, got {num_classes!r}')
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> Optional[dict]:
        """Raise ``ValueError`` naming the file if the label map is bad."""
        seg = results.get('gt_seg_map')
        name = results.get('seg_map_path', '<label map>')
        if seg is None:
            raise ValueError(f'CheckSegAnnotation: no gt_seg_map for {name}; '
                             'put it after LoadAnnotations')
        img = results.get('img')
        if img is not None and img.shape[:2] != seg.shape[:2]:
            raise ValueError(
                f'Label map {name} has size {seg.shape[1]}x{seg.shape[0]} '
                f'(WxH) but its image {results.get("img_path")} has '
                f'{img.shape[1]}x{img.shape[0]}')
        ids = np.unique(seg)
        bad = ids[(ids != self.ignore_index)
                  & ((ids < 0) | (ids >= self.num_classes))]
        if bad.size:
            reduced = ' (after reduce_zero_label)' if results.get(
                'reduce_zero_label') else ''
            raise ValueError(
                f'Label map {name} holds class ids {bad.tolist()}{reduced} '
                f'outside [0, {self.num_classes}) that are not the ignore '
                f'index {self.ignore_index}: check num_classes and the '
                'label encoding of the data set')
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_classes={self.num_classes}, '
                f'ignore_index={self.ignore_index})')
