"""Names and numbers every part of ``ml/`` must agree on: the task names and the random seeds.

One home, so a model's metadata, its plots and the bot all speak of the same tasks, and a training run
is reproducible from the seed recorded in its metadata.
"""

from __future__ import annotations

from collections.abc import Callable
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

#: How ``ml/`` reports progress: ``progress(percent 0-100, message, stage)``. A plain callable, so ``ml/``
#: knows nothing of the job context that throttles and forwards it.
Progress = Callable[[float, str, str], None]
