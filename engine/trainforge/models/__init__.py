from trainforge.models.classifier import ImageClassifier

__all__ = ["ImageClassifier"]
