"""Downloading dataset archives: checksum verification and path-traversal-safe extraction."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from adbench.errors import DataError


@dataclass(frozen=True)
class DownloadInfo:
    """Where an official archive lives and its published checksum.

    Attributes:
        name: dataset name used in messages and file names.
        url: the archive's official address.
        checksum: hex digest; sha256 (64 hex digits) or, where only that is published, md5 (32).
    """

    name: str
    url: str
    checksum: str


MVTEC_AD = DownloadInfo(
    name="MVTec AD",
    url="https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/download/"
    "420938113-1629952094/mvtec_anomaly_detection.tar.xz",
    checksum="cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d",
)
# MVTec 3D-AD's publishers give an md5 only; it is checked as such.
MVTEC_3D = DownloadInfo(
    name="MVTec 3D-AD",
    url="https://www.mydrive.ch/shares/45920/dd1eb345346df066c63b5c95676b961b/download/"
    "428824485-1643285832/mvtec_3d_anomaly_detection.tar.xz",
    checksum="d8bb2800fbf3ac88e798da6ae10dc819",
)


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: Path, checksum: str) -> None:
    """Raises DataError unless the file's sha256 (or md5 for 32-digit checksums) equals ``checksum``."""
    algorithm = "md5" if len(checksum) == 32 else "sha256"
    actual = file_digest(path, algorithm)
    if actual.lower() != checksum.lower():
        raise DataError(
            f"{path} has {algorithm} {actual}, expected {checksum}: the download is corrupt or not the "
            "official archive; delete it and download again"
        )


def _safe_member_path(name: str, destination: Path) -> Path:
    """Resolves an archive member below ``destination``; rejects absolute paths and '..'."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise DataError(f"archive member {name!r} points outside the extraction folder; refusing to extract")
    target = (destination / pure).resolve()
    if not target.is_relative_to(destination.resolve()):
        raise DataError(f"archive member {name!r} points outside the extraction folder; refusing to extract")
    return target


def safe_extract(archive: Path, destination: Path) -> None:
    """Extracts a tar or zip archive, refusing absolute paths, '..' components and links."""
    destination.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as handle:
            for info in handle.infolist():
                target = _safe_member_path(info.filename, destination)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise DataError(f"archive member {info.filename!r} is a link; refusing to extract")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with handle.open(info) as source, open(target, "wb") as sink:
                    shutil.copyfileobj(source, sink)
        return
    with tarfile.open(archive) as handle:
        for member in handle.getmembers():
            _safe_member_path(member.name, destination)
            if member.issym() or member.islnk() or member.isdev():
                raise DataError(f"archive member {member.name!r} is a link or device; refusing to extract")
        handle.extractall(destination, filter="data")


def _fetch(url: str, target: Path) -> None:
    """Streams ``url`` to ``target`` with a progress bar (tqdm ships with lightning)."""
    from tqdm import tqdm

    with urllib.request.urlopen(url) as response:  # noqa: S310 - official https archive addresses only
        total = int(response.headers.get("Content-Length", 0)) or None
        with (
            open(target, "wb") as sink,
            tqdm(total=total, unit="B", unit_scale=True, desc=target.name) as bar,
        ):
            for chunk in iter(lambda: response.read(1 << 20), b""):
                sink.write(chunk)
                bar.update(len(chunk))


def download_and_extract(info: DownloadInfo, root: str | Path, archive: str | Path | None = None) -> Path:
    """Downloads (or takes a local copy of) an archive, verifies it, and extracts it into ``root``.

    Args:
        info: the archive's address and checksum.
        root: folder that receives the dataset's category folders.
        archive: an already downloaded archive to use instead of the network.

    Returns:
        ``root``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if archive is None:
        archive = root / PurePosixPath(info.url).name
        if not archive.exists():
            partial = archive.with_suffix(archive.suffix + ".part")
            try:
                _fetch(info.url, partial)
            except OSError as error:
                raise DataError(
                    f"cannot download {info.name} from {info.url} ({error}); download it by hand and pass "
                    f"--archive /path/to/{archive.name}"
                ) from None
            os.replace(partial, archive)
    archive = Path(archive)
    if not archive.is_file():
        raise DataError(f"archive {archive} does not exist")
    verify_checksum(archive, info.checksum)
    with tempfile.TemporaryDirectory(dir=root, prefix=".extract-") as staging:
        safe_extract(archive, Path(staging))
        for item in Path(staging).iterdir():
            final = root / item.name
            if final.exists():
                shutil.rmtree(final) if final.is_dir() else final.unlink()
            os.replace(item, final)
    return root
