from .cosub_loss import CosubLoss
from .deit3_bce_loss import DeiT3BCELoss

__all__ = ['CosubLoss', 'DeiT3BCELoss']
