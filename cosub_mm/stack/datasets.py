"""A clear error for datasets that find no samples."""
from typing import Any

__all__ = ['fix_empty_dataset_error']


def fix_empty_dataset_error() -> bool:
    """Name the folder when a dataset finds no samples.

    Fixes ``ValueError: need at least one array to concatenate`` raised by
    mmengine 0.10.7's ``BaseDataset._serialize_data`` (``np.concatenate``
    of an empty list) when a dataset, e.g. mmseg's ``ADE20KDataset``, finds
    no image in an existing but empty (or wrongly named) folder. With the
    fix the error names the dataset class, ``data_root``, ``data_prefix``
    and ``ann_file``.

    Returns:
        bool: Whether the fix was applied.
    """
    from mmengine.dataset import BaseDataset
    original = BaseDataset._serialize_data
    if getattr(original, '_cosub_checked', False):
        return False

    def _serialize_data(self: Any) -> Any:
        if len(self.data_list) == 0:
            raise ValueError(
                f'{type(self).__name__} found no samples: data_root='
                f'{self.data_root!r}, data_prefix={self.data_prefix!r}, '
                f'ann_file={self.ann_file!r}. Check that the folder holds '
                'images (and annotations) with the expected suffixes.')
        return original(self)

    _serialize_data._cosub_checked = True
    BaseDataset._serialize_data = _serialize_data
    return True
