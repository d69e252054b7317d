import cv2
import pytest

from edgevision.data import list_images, read_image
from edgevision.errors import CorruptImageError, DataError


def test_read_good(image_file, bgr_image):
    assert (read_image(image_file) == bgr_image).all()


def test_corrupt_files(tmp_path, bgr_image):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("hello")
    full = tmp_path / "full.jpg"
    cv2.imwrite(str(full), bgr_image)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    for path, needle in [(empty, "empty"), (text, "not a decodable"), (cut, "truncated")]:
        with pytest.raises(CorruptImageError, match=needle):
            read_image(path)
    with pytest.raises(CorruptImageError, match="does not exist"):
        read_image(tmp_path / "nope.jpg")


def test_list_images(tmp_path, image_file):
    (tmp_path / "notes.txt").write_text("x")
    assert list_images(tmp_path) == [image_file]
    with pytest.raises(DataError):
        list_images(tmp_path / "missing")
