import hashlib
import io
import tarfile
import zipfile

import pytest

from adbench.data.download import DownloadInfo, download_and_extract, safe_extract, verify_checksum
from adbench.errors import DataError


def _tar(path, members: dict[str, bytes], symlink: str | None = None):
    with tarfile.open(path, "w:gz") as handle:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            handle.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo("link")
            info.type = tarfile.SYMTYPE
            info.linkname = symlink
            handle.addfile(info)
    return path


def test_checksum_sha256_and_md5(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"adbench")
    verify_checksum(path, hashlib.sha256(b"adbench").hexdigest())
    verify_checksum(path, hashlib.md5(b"adbench").hexdigest())
    with pytest.raises(DataError, match="sha256"):
        verify_checksum(path, "0" * 64)


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"])
def test_tar_traversal_is_rejected(tmp_path, name):
    archive = _tar(tmp_path / "bad.tar.gz", {name: b"x"})
    with pytest.raises(DataError, match="outside"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_tar_links_are_rejected(tmp_path):
    archive = _tar(tmp_path / "bad.tar.gz", {"ok.txt": b"x"}, symlink="/etc/passwd")
    with pytest.raises(DataError, match="link"):
        safe_extract(archive, tmp_path / "out")


def test_zip_traversal_is_rejected(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("../evil.txt", b"x")
    with pytest.raises(DataError, match="outside"):
        safe_extract(archive, tmp_path / "out")


def test_download_and_extract_from_local_archive_verifies_first(tmp_path):
    archive = _tar(tmp_path / "data.tar.gz", {"bottle/train/good/000.png": b"png"})
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    root = download_and_extract(
        DownloadInfo("toy", "https://example.invalid/data.tar.gz", digest), tmp_path / "root", archive
    )
    assert (root / "bottle" / "train" / "good" / "000.png").read_bytes() == b"png"
    with pytest.raises(DataError, match="corrupt"):
        download_and_extract(
            DownloadInfo("toy", "https://x.invalid/a", "1" * 64), tmp_path / "other", archive
        )
    assert not (tmp_path / "other" / "bottle").exists()
