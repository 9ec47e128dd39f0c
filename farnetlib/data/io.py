"""Low-level readers shared by the dataset classes; every error names the file (and line)."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["DatasetError", "SplitAbsent", "read_json", "read_gray", "gray_uint8", "read_points_txt", "find_image", "sha256_file",
           "IMAGE_SUFFIXES", "exif_orientation", "oriented_size", "atomic_path", "write_atomic", "read_json_record",
           "RunRecordError"]

IMAGE_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff")


class DatasetError(ValueError):
    """Bad or missing dataset content; the message names the file (and line where there is one)."""


class SplitAbsent(DatasetError):
    """A split that this copy of the dataset does not hold at all (its folder or rows are absent, as
    ISBI Test2 in ours), as opposed to one that is there but damaged."""


# EXIF orientations 5-8 turn the image by 90 degrees: its stored width and height swap on display
_QUARTER_TURNS = (5, 6, 7, 8)


def exif_orientation(im: Image.Image) -> int:
    """The image's EXIF orientation tag (1 = as stored; 2-8 = mirrored and/or rotated for display)."""
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except (ValueError, TypeError, SyntaxError):
        return 1


def oriented_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) of an open image as viewers show it (its EXIF orientation applied)."""
    w, h = im.size
    return (h, w) if exif_orientation(im) in _QUARTER_TURNS else (w, h)


def read_json(path: str | Path, error: type[Exception] = DatasetError, what: str = "file"):
    """The JSON value in ``path``; a missing file or bad JSON raises ``error`` (one line naming the
    file, and the line and column of a syntax error). ``what`` names the kind of file in the message."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))  # a byte-order mark (Windows editors) is fine
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise error(f"{path}: a folder, not a {what}") from None
    except json.JSONDecodeError as err:
        raise error(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not a text file (expected JSON)") from None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def find_image(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` with any accepted image suffix (.bmp, .jpg, .png, ...), or None."""
    for suffix in IMAGE_SUFFIXES:
        for cand in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if cand.is_file():
                return cand
    return None


def gray_uint8(image: np.ndarray) -> np.ndarray:
    """The one rule that turns any image array into the (H, W) uint8 the model reads, for files and
    arrays alike: RGB(A) uint8 -> luma as PIL's ``convert("L")`` (what a file gives); other colour
    arrays -> the channels' mean; uint8 as it is; booleans and floats in [0, 1] x 255; anything else
    (16/32-bit integers, floats beyond [0, 1]) scaled by its own range. NaN or inf is a ValueError."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        if arr.dtype == np.uint8:
            return np.asarray(Image.fromarray(np.ascontiguousarray(arr[..., :3])).convert("L"))
        arr = arr[..., :3].astype(np.float64).mean(axis=-1)
    if arr.ndim != 2:
        raise ValueError(f"an image must be (H, W) or (H, W, 3), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    values = arr.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError("the image holds NaN or infinite pixel values")
    lo, hi = values.min(), values.max()
    floating = np.issubdtype(arr.dtype, np.floating)
    if floating and lo >= 0 and hi <= 1:
        return (values * 255).round().astype(np.uint8)  # a float image in [0, 1]
    return ((values - lo) / max(hi - lo, 1e-12 if floating else 1) * 255).round().astype(np.uint8)


def read_gray(path: Path) -> np.ndarray:
    """Decode an image file to a 2-D uint8 array (RGB with equal channels -> one channel), turned
    as viewers and labelling tools show it: an EXIF orientation (a phone or scanner photo) is applied."""
    try:
        with Image.open(path) as opened:
            opened.load()
            im = ImageOps.exif_transpose(opened) if exif_orientation(opened) != 1 else opened
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit, 32-bit or float images
                try:
                    return gray_uint8(np.asarray(im, dtype=np.float32 if im.mode == "F" else np.int64))
                except ValueError as err:
                    raise DatasetError(f"image {path}: {err}") from None
            return np.asarray(im.convert("L"))
    except FileNotFoundError:
        raise DatasetError(f"image file not found: {path}") from None
    except Image.DecompressionBombError as err:
        raise DatasetError(f"image {path} is too large to decode safely ({err})") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DatasetError(f"unreadable image {path}: {err}") from err


def read_points_txt(path: Path, k: int) -> np.ndarray:
    """The first ``k`` lines of an ``x,y`` annotation file as a (k, 2) float array."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        raise DatasetError(f"annotation file not found: {path}") from None
    if len(lines) < k:
        raise DatasetError(f"{path}: {len(lines)} lines, expected at least {k} landmark lines 'x,y'")
    pts = np.empty((k, 2))
    for i, line in enumerate(lines[:k]):
        parts = line.replace(" ", "").split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            pts[i] = [float(parts[0]), float(parts[1])]
        except ValueError:
            raise DatasetError(f"{path}:{i + 1}: expected 'x,y', got {line!r}") from None
        if not np.isfinite(pts[i]).all():
            raise DatasetError(f"{path}:{i + 1}: landmark is not finite: {line!r}")
    return pts


# --- atomic writes and run records -------------------------------------------------------------

class RunRecordError(ValueError):
    """A run record that does not parse (a truncated or damaged file): names the file."""


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """A uniquely named temporary path beside ``path`` to write to; on success it is renamed over
    ``path`` (``os.replace``, atomic on one filesystem), so a kill or a full disk leaves the old file
    or the new one, never a truncated one, and concurrent writers never share a temporary name. On
    failure the temporary file is removed, and a full disk is said as such, with the path."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600: give the file the mode a plain open() would
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if _disk_full(err, path.parent):
            raise OSError(errno.ENOSPC, f"no space left on device writing {path} "
                                        f"({shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free)") from None
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FULL_BELOW_BYTES = 256 * 2**20  # torch's short-write message does not say why: below this much free space, a full disk


def _disk_full(err: BaseException, folder: Path) -> bool:
    if isinstance(err, OSError):
        return err.errno == errno.ENOSPC
    if not isinstance(err, RuntimeError):
        return False
    # torch.save reports a failed write as "enforce fail at inline_container.cc ... file write failed", or,
    # on a full disk (seen on a 1 MiB tmpfs with torch 2.14), as "... unexpected pos 704 vs 598"
    text = str(err)
    if "file write failed" in text:
        return True
    return "inline_container.cc" in text and "unexpected pos" in text and shutil.disk_usage(folder).free < FULL_BELOW_BYTES


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_path` (flushed to disk before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())


def read_json_record(path: str | Path) -> dict:
    """A JSON run record; one that does not parse raises :class:`RunRecordError` naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunRecordError(f"run record {path} is damaged (does not parse: {err}); restore it from git or "
                             "remove it to let the run resume or re-evaluate") from None
