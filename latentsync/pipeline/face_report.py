"""What to say when no frame has a usable face, and the error for callers that require one.

Frames without the chosen face pass through unchanged (never a crash); when that is every frame, the output is a
copy of the input, which must never go unsaid: the message names the input, why (no face seen, or fewer faces
than ``face_index`` asks for) and what to try.
"""

from __future__ import annotations

from typing import Union


class NoFaceError(ValueError):
    """No frame had a usable face and the caller asked for one (``require_face``)."""


def no_face_message(video: str, frames: int, face_index: Union[int, str], max_faces: int) -> str:
    """Why nothing was lip-synced in ``video`` and what to try; ``max_faces`` is the most faces seen in one frame."""
    head = f"{video}: no usable face in any of its {frames} frame(s), so nothing was lip-synced"
    if isinstance(face_index, int) and max_faces > 0 and face_index >= max_faces:
        choices = "0" if max_faces == 1 else f"0..{max_faces - 1}"
        return (f"{head}: face index {face_index} asks for face number {face_index + 1} from the left, but at most "
                f"{max_faces} face(s) were seen in a frame. Use face index {choices} or 'largest'.")
    if max_faces > 0:
        return (f"{head}: faces were seen but none could be followed as one face. Try another detector or face "
                "index, or crop the video around the speaker.")
    return (f"{head}: no face was detected. Check that the video shows a face turned towards the camera; faces "
            "smaller than about a tenth of the frame's longer side can be missed, so crop or scale the video "
            "around the face.")
