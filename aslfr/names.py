"""The names a run is logged and summarized under, in W&B and in summary.json, and the names of the
files in its directory: defined once here. They are the contract with the dashboard, the sweep
definitions (`metric: {name: val/score}`), `aslfr-compare` and the tools that read a run
directory. (aslfr/export/competition.py, which knows nothing of aslfr, spells the ones it reads
itself.)"""

# the run directory's files
RECORD_DIR = ".hydra"  # the run's configuration: config.yaml, hydra.yaml, overrides.yaml
CONFIG_FILE = "config.yaml"  # (in RECORD_DIR) the composed configuration
STATUS_FILE = "status.json"  # running | finished | failed | interrupted, host, pid
SUMMARY_FILE = "summary.json"  # what the run measured (aslfr.summary.Summary writes it)
FEATURES_FILE = "features.json"  # the feature layout and normalization statistics
FOLDS_FILE = "folds.csv"  # each sequence's participant and fold
CHECKPOINTS_DIR = "checkpoints"  # aslfr/train/checkpoints.py
BEST_WEIGHTS_FILE = "best.weights.h5"  # (in CHECKPOINTS_DIR) the best validation score's weights
MODEL_FILE = "model.tflite"  # the export
INFERENCE_ARGS_FILE = "inference_args.json"  # the export's selected_columns
SUBMISSION_FILE = "submission.zip"  # model.tflite and inference_args.json, as the competition takes them
ENSEMBLE_FILE = "ensemble.json"  # aslfr-export --ensemble: its members and measurements

# training, per logged step and per epoch
TRAIN_LOSS = "train/loss"
TRAIN_LR = "train/lr"
TRAIN_EPOCH_LOSS = "train/epoch_loss"
TRAIN_SAMPLES_PER_SEC = "train/samples_per_sec"
TRAIN_SEQUENCES = "train/sequences"
EPOCH = "epoch"

# validation, per evaluation
VAL_LOSS = "val/loss"
VAL_TOP1 = "val/top1"
VAL_TOP5 = "val/top5"
VAL_LEVENSHTEIN = "val/levenshtein"
VAL_SCORE = "val/score"  # (N - D) / N, the competition metric: what sweeps maximize


def val_score(decode: str) -> str:
    """val/score_attention, val/score_ctc, val/score_joint (and val/score_joint@W with
    model.decode=best): each decoding a model can do."""
    return f"{VAL_SCORE}_{decode}"


VAL_SECONDS = "val/seconds"
VAL_FALLBACKS = "val/fallbacks"  # validation clips given the fallback phrase
FALLBACK_PHRASE = "fallback/phrase"
FALLBACK_EXPECTED = "fallback/expected_score"  # the phrase's expected N - D per clip (train folds)
FALLBACK_FILE = "fallback.json"  # in the run directory: the phrase and threshold the run chose
FALLBACK_MIN_HAND_FRAMES = "fallback/min_hand_frames"  # the threshold the run ships (0: off)
FALLBACK_TRAIN_CLIPS = "fallback/train_clips"  # training clips below it (when chosen there)
FALLBACK_TRAIN_GAIN = "fallback/train_gain"  # what it gains on the training folds' score
FALLBACK_VAL_CLIPS = "fallback/val_clips"  # validation clips below it
FALLBACK_VAL_GAIN = "fallback/val_gain"  # val/score with it less val/score without it
DECODE = "decode/how"  # the decoding the run ships: attention, ctc or joint (model.decode=best: chosen)
DECODE_JOINT_WEIGHT = "decode/joint_weight"  # ... and its CTC weight, when joint
DECODING_FILE = "decoding.json"  # in the run directory: the decoding the run ships
VAL_SEQUENCES = "val/sequences"
VAL_EXAMPLES = "val/examples"
VAL_DISTANCE_HISTOGRAM = "val/distance_histogram"

# the run's summary
BEST_VAL_SCORE = "best/val/score"  # the shipped model's: best weights, chosen decoding and fallback
BEST_EPOCH = "best/epoch"
PARAMS = "params"
EPOCHS = "epochs"
WANDB_ID = "wandb/id"
WANDB_MODE = "wandb/mode"

# the devices the run saw (summary and W&B config): which GPU a pinned agent or trial ran on
DEVICES_CUDA_VISIBLE = "devices/cuda_visible_devices"  # the environment's, "" when unset
DEVICES_GPUS = "devices/gpus"  # TensorFlow's GPUs, each with its model name when TensorFlow has it
DEVICES_GPU_COUNT = "devices/gpu_count"
DEVICES_HOST = "devices/host"
DEVICES_SLURM_JOB = "devices/slurm_job"  # SLURM_JOB_ID[_SLURM_ARRAY_TASK_ID], "" outside SLURM

# the export and the inference budget
INFER_LATENCY_MS = "infer/latency_ms"
INFER_MODEL_MB = "infer/model_mb"
INFER_PROJECTED_HOURS = "infer/projected_hours"
INFER_VAL_SCORE = "infer/val_score"
BUDGET_OK = "budget/ok"
BUDGET_REASON = "budget/reason"
EXPORT_QUANTIZE = "export/quantize"
EXPORT_SECONDS = "export/seconds"
INFER_LATENCY_MS_RAW = "infer/latency_ms_raw"  # on the machine that ran (infer/latency_ms: reference CPU)
INFER_CPU_FACTOR = "infer/cpu_factor"  # that machine's speed relative to the reference CPU

# W&B artifact types
SUBMISSION = "submission"  # the export: model.tflite, inference_args.json[, submission.zip]
