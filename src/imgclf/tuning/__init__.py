"""Finding a good training recipe for a dataset (``imgclf tune``).

* ``space``: the options searched and their ranges (those the user fixed are left out);
* ``search``: the time-boxed Optuna search (seeded TPE, Hyperband pruning, resumable), then the
  final model trained with the best recipe;
* ``leaderboard``: every trial in a CSV and a chart.
"""
