"""Lip-sync metrics as upstream LatentSync's ``eval/`` computes them (commit a229c39); see docs/sync_score.md.

* SyncNet v2 confidence / distance / offset (``eval/eval_sync_conf.py``): :mod:`.score` runs the chain — S3FD
  network :mod:`.s3fd` and boxes :mod:`.faces`, cuts :mod:`.scenes`, face tracks :mod:`.tracks`, 224 crops
  :mod:`.crops`, MFCC :mod:`.mfcc`, the network :mod:`.syncnet_v2`, the +-15 frame offset search :mod:`.sync` —
  and :mod:`.plot` draws the per-window curve.
* StableSyncNet (LatentSync's own SyncNet) and the accuracy of ``eval/eval_syncnet_acc.py``:
  :mod:`.stable_syncnet`, :mod:`.syncnet_accuracy`.
* Model files :mod:`.files`, strict loading :mod:`.checkpoints`, deterministic random weights in the real
  formats (tests, fixtures) :mod:`.tiny`.

Nothing is imported or built at import time.
"""
