"""Training data: upstream's preprocessing pipeline (``latentsync data prepare``) and, later, the datasets.

The preprocessing (upstream's ``preprocess/data_processing_pipeline.py`` at a229c39), one module per step, in
order: :mod:`.readable` (drop unreadable files), :mod:`.resample` (25 fps, 16 kHz), :mod:`.shots` (scene cuts,
PySceneDetect's adaptive detector), :mod:`.segments` (5 s segments), :mod:`.faces` (affine-aligned faces, the
pipeline's own detectors and warp), :mod:`.sync` (SyncNet filter and offset fix), :mod:`.quality` (HyperIQA
filter). :mod:`.runner` runs them resumably in worker processes (:mod:`.records`: one record per step and item;
:mod:`.files`: layout and atomic writes) and writes the manifest (:mod:`.manifest`); :mod:`.cli` is the command.

What else goes here: datasets of aligned face clips with their audio (upstream's ``latentsync/data``: filelists,
per-clip whisper features cached to disk, the 16-frame windows and their masks) and samplers that yield
``(faces, audio windows, reference)`` batches. Nothing here is imported by inference.
"""
