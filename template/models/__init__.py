from template.models.classifier import ImageClassifier

__all__ = ["ImageClassifier"]
