"""trainforge: the engine of the training template. Projects hold their data and model hooks and configs;
this package runs them (LightningCLI, run directories, training features, reports, tools)."""

__version__ = "0.2.0"
