from .cosub_loss import CosubLoss

__all__ = ['CosubLoss']
