"""Stage 4, train: one run, from its directory to its summary.

    rundir       unique names, the run's own record, the resume check, status.json
    run          one run top to bottom: probe -> data -> build -> fit -> ship -> export -> summary
    loop         the training of a run: build or restore, fit, what it ships, its summary
    callbacks    around Keras' loop: NaN guard, validation, checkpointing, logging, progress
    checkpoints  checkpoints that survive kill -9
    tracking     Weights & Biases (online or offline), kept in step with the checkpoints
    wandb_log    W&B's transaction log on disk, read record by record

Imports the stages below it (data, model, export).
"""
