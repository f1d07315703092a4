from codec.metrics.identity import (
    SAME_PERSON_THRESHOLD,
    descriptor_distance,
    face_descriptor,
    same_person_fraction,
)
from codec.metrics.landmarks import detect_face
from tests._face_frames import CLIP_A, CLIP_B, face_frames


def _descriptor(clip: str, index: int):
    frame = face_frames(clip)[index]
    box = detect_face(frame)
    assert box is not None
    return face_descriptor(frame, box)


def test_same_person_close_different_people_far():
    a0, a1 = _descriptor(CLIP_A, 0), _descriptor(CLIP_A, 25)
    b0 = _descriptor(CLIP_B, 0)
    assert a0.shape == (128,)
    same = descriptor_distance(a0, a1)
    other = descriptor_distance(a0, b0)
    assert same < 0.4
    assert other > SAME_PERSON_THRESHOLD
    assert same_person_fraction([same, other]) == 0.5


def test_identical_frames_have_zero_distance():
    a = _descriptor(CLIP_A, 5)
    assert descriptor_distance(a, a) == 0.0
