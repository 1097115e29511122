from trainforge.data.datamodule import DataModule, Splits, TransformDataset
from trainforge.data.digits import DigitsDataModule

__all__ = ["DataModule", "DigitsDataModule", "Splits", "TransformDataset"]
