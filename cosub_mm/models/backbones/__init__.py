from .efficient_drop_path_blocks import (
    EfficientConvNeXtBlock, EfficientDeiT3TransformerEncoderLayer,
    EfficientSwinBlock, EfficientTransformerEncoderLayer,
    enable_efficient_drop_path)
from .pit import PiT, PiTBlock, PiTPooling
from .regnety import RegNetY, RegNetYBottleneck, SqueezeExcitation

__all__ = [
    'EfficientTransformerEncoderLayer',
    'EfficientDeiT3TransformerEncoderLayer',
    'EfficientSwinBlock', 'EfficientConvNeXtBlock',
    'enable_efficient_drop_path', 'PiT', 'PiTBlock', 'PiTPooling', 'RegNetY',
    'RegNetYBottleneck', 'SqueezeExcitation'
]
