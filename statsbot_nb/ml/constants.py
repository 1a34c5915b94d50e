"""Names and numbers every part of ``ml/`` must agree on: the task names and the random seeds.

One home, so a model's metadata, its plots and the bot all speak of the same tasks, and a training run
is reproducible from the seed recorded in its metadata.
"""

from __future__ import annotations

from typing import Final

#: The two tasks a model can do; the bot sends and reads exactly these strings.
REGRESSION: Final = "regression"
CLASSIFICATION: Final = "classification"
TASKS: Final = (REGRESSION, CLASSIFICATION)

#: Seeds the train/test split and every seeded estimator (recorded in metadata as ``split.seed``).
SEED: Final = 42

#: Seeds only the random subsample of points a plot draws when a held-out sample is too big to show
#: whole. Separate from :data:`SEED` so that plots drawn for existing models stay exactly as they were.
PLOT_SAMPLE_SEED: Final = 0
