from .pit import EfficientPiTBlock, PiT, PiTBlock, PiTPooling
from .regnety import RegNetY, RegNetYBottleneck, SqueezeExcitation

__all__ = [
    'PiT', 'PiTBlock', 'EfficientPiTBlock', 'PiTPooling', 'RegNetY',
    'RegNetYBottleneck', 'SqueezeExcitation'
]
