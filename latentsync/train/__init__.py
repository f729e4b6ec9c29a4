"""Training loops (empty for now: nothing here is imported by inference).

What goes here: the U-Net fine-tuning loop (upstream's stage-2 training: noise-prediction loss, optional SyncNet
and LPIPS losses, TREPA) and SyncNet training, built on ``latentsync.models`` for the networks,
``latentsync.data`` for batches and ``latentsync.metrics`` for the sync losses and validation scores.
"""
