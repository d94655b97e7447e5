"""An mmseg ``EncoderDecoder`` that layer-wise learning-rate decay can use.

mmseg 1.2.2's ``LearningRateDecayOptimizerConstructor`` only knows ConvNeXt,
BEiT and MAE backbones (``NotImplementedError`` otherwise), and mmpretrain's
``LearningRateDecayOptimWrapperConstructor`` asks the *model* for
``get_layer_depth``, which mmseg's ``EncoderDecoder`` lacks. This subclass
delegates to the backbone's own ``get_layer_depth`` (mmpretrain's
VisionTransformer/DeiT3, Swin, ConvNeXt all have one), so ViT-family
backbones get BEiT-style decay in segmentation (Bao et al., BEiT, 2021).
"""
from typing import Tuple

from mmseg.models.segmentors import EncoderDecoder

from cosub_mm.registry import MODELS

__all__ = ['LayerDecayEncoderDecoder']


@MODELS.register_module()
class LayerDecayEncoderDecoder(EncoderDecoder):
    """``EncoderDecoder`` exposing ``get_layer_depth`` for layer decay.

    With ``L`` backbone blocks, a parameter of depth ``d`` gets
    ``lr · decay ** (L + 1 - d)``: the patch embedding (d = 0) the smallest
    rate, block ``i`` depth ``i + 1``, and every parameter outside the
    backbone (neck, decode and auxiliary heads) depth ``L + 1``, i.e. the
    base rate.

    Example:
        >>> model = dict(type='cosub_mm.LayerDecayEncoderDecoder', ...)
        >>> optim_wrapper = dict(
        ...     constructor='mmpretrain.LearningRateDecayOptimWrapperConstructor',
        ...     optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
        ...     paramwise_cfg=dict(layer_decay_rate=0.65))
    """

    def get_layer_depth(self, param_name: str,
                        prefix: str = '') -> Tuple[int, int]:
        """Return ``(layer_depth, num_depths)`` of a model parameter.

        Args:
            param_name (str): Name in ``model.named_parameters()``.
            prefix (str): Unused; kept for the constructor's signature.

        Returns:
            tuple[int, int]: The depth of the parameter and the number of
            depths (``L + 2``), as the backbone's ``get_layer_depth``.
        """
        if not hasattr(self.backbone, 'get_layer_depth'):
            raise NotImplementedError(
                f'{type(self.backbone).__name__} has no get_layer_depth(), '
                'so layer-wise lr decay cannot rank its parameters; use a '
                'backbone from mmpretrain (VisionTransformer, DeiT3, '
                'SwinTransformer, ConvNeXt, ...)')
        return self.backbone.get_layer_depth(param_name, 'backbone.')
