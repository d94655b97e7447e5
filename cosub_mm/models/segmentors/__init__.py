from .cosub_encoder_decoder import CosubEncoderDecoder
from .layer_decay_encoder_decoder import LayerDecayEncoderDecoder

__all__ = ['CosubEncoderDecoder', 'LayerDecayEncoderDecoder']
