from .efficient_drop_path_blocks import (
    EfficientConvNeXtBlock, EfficientDeiT3TransformerEncoderLayer,
    EfficientSwinBlock, EfficientTransformerEncoderLayer,
    copy_sharing_blocker, enable_efficient_drop_path)
from .pit import PiT, PiTBlock, PiTPooling
from .regnety import RegNetY, RegNetYBottleneck, SqueezeExcitation

__all__ = [
    'EfficientTransformerEncoderLayer',
    'EfficientDeiT3TransformerEncoderLayer',
    'EfficientSwinBlock', 'EfficientConvNeXtBlock',
    'enable_efficient_drop_path', 'copy_sharing_blocker', 'PiT', 'PiTBlock', 'PiTPooling', 'RegNetY',
    'RegNetYBottleneck', 'SqueezeExcitation'
]
