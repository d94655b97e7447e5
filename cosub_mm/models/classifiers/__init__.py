from .cosub_classifier import CosubClassifier

__all__ = ['CosubClassifier']
