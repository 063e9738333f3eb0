"""Stage 2, model: the encoder-decoder over landmark frames (Keras 3).

    config     ModelConfig: the `model` group plus what the data fixes
    layers     FrameEmbedding, EncoderBlock, DecoderBlock
    model      FingerspellingModel (read top to bottom) and `build`
    decoding   greedy decoding with a key/value cache (validation metric and export)
    losses     cross-entropy, CTC, top-k, the competition's edit score
    optim      optimizers and learning-rate schedules

Imports only aslfr.data (and the shared aslfr.errors / aslfr.atomic / aslfr.config).
"""
