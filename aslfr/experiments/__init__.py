"""Stage 5, experiments: many runs.

    sweep     the offline runner of W&B sweep definitions (several runners, resume, pruning)
    compare   leaderboard, cross-validation summary and Pareto plot of many runs
    offline   W&B offline runs read back
    plot      a run's learning curve

Imports the stages below it; nothing imports it.
"""
