"""Your project: the data hook (`data.py`), the model hook (`model.py`) and examples; the engine
(`trainforge`) runs them."""
