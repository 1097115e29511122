from trainforge.models.model import ImageClassifier, Model

__all__ = ["ImageClassifier", "Model"]
