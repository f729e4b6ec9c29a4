"""Training and evaluation data (empty for now: nothing here is imported by inference).

What goes here: datasets of aligned face clips with their audio (upstream's ``latentsync/data``: filelists,
per-clip whisper features cached to disk, the affine-aligned 16-frame windows and their masks), samplers that
yield ``(faces, audio windows, reference)`` batches, and the preprocessing that builds them from raw videos with
the same stages the pipeline uses (``face.track``, ``face.align``, ``audio.features``).
"""
