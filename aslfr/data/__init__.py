"""Stage 1, data: the Kaggle layout on disk -> features -> cache -> folds -> tf.data batches.

    layout     the competition's files, columns and landmark facts (21 points a hand, ...)
    reader     train.csv / supplemental_metadata.csv and the parquet files (column projection)
    synthetic  the embedded default: synthetic signers written in the exact Kaggle layout
    features   which landmarks, mirroring to the signing hand, normalization statistics
    vocab      characters <-> token ids (+ PAD, SOS, EOS)
    cache      prepared features on disk, one build per key
    folds      participant-grouped folds that depend on train.csv alone
    pipeline   tf.data: batches of frames, masks and tokens; augmentation; the TensorFlow twins
               of the feature code used inside the exported graph
    prepare    all of the above for one config (`python -m aslfr.data.prepare`)

Imports nothing from the later stages.
"""
