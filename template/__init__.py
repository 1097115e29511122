"""A PyTorch Lightning training template. Edit the hooks in `data/` and `models/`; the rest is wired."""

__version__ = "0.1.0"
