"""Stage 4, train: one run, from its directory to its summary.

    rundir       unique names, the run's own record, the resume check, status.json
    run          the orchestration of one run: probe -> data -> training -> export -> summary
    loop         Keras fit with evaluation, checkpoints, progress and the NaN guard
    checkpoints  checkpoints that survive kill -9
    tracking     Weights & Biases (online or offline), kept in step with the checkpoints
    wandb_log    W&B's transaction log on disk, read record by record

Imports the stages below it (data, model, export).
"""
