"""Machine-learning layer: loading tables, training, predicting, the model store, plots (sync, no I/O loop)."""
