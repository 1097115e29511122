from template.data.datamodule import DataModule, Splits, TransformDataset
from template.data.digits import DigitsDataModule

__all__ = ["DataModule", "DigitsDataModule", "Splits", "TransformDataset"]
