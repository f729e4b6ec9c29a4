"""Face geometry: fixed mouth mask (``mask``), alignment and aligned crops (``align``), paste-back
(``restore``) and exact resize kernels (``resize``). Detectors and tracking live in ``detectors``/``track``.

Submodules are imported on demand; importing this package loads nothing heavy.
"""
