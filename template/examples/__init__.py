"""Worked examples of the two hooks beyond images: `make train EXPERIMENT=tabular` and `EXPERIMENT=regression`."""
