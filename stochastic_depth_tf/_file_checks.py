"""What is damaged in a saved model or weights file, judged from its bytes alone.

`stochastic_depth_tf.saving` calls this when Keras fails to load a file:
`damage(path)` examines the file on its own, never the words of Keras'
error, and returns the message of a `DamagedFileError`, or None if it finds
nothing damaged. It knows the three formats Keras 3 writes: a `.keras` zip
archive (its CRC-32 checks, its `config.json` and `model.weights.h5`
members), an HDF5 file (its signature, its length against its superblock's
record, then everything h5py reads back), and a model directory saved
unzipped (the same checks on its two files). Which weights fit which model
is `saving`'s concern, not this module's.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
import zlib
from types import ModuleType
from typing import Any, BinaryIO, Optional

CONFIG_MEMBER = "config.json"
WEIGHTS_MEMBER = "model.weights.h5"
# Keras writes a model's weights as HDF5, and reads them from NumPy's `.npz` too.
_WEIGHTS_MEMBERS = (WEIGHTS_MEMBER, "model.weights.npz")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_ZIP_LOCAL_HEADER = b"PK\x03\x04"


def is_remote(path: str) -> bool:
    return "://" in path


def is_keras_directory(path: str) -> bool:
    """A model saved unzipped (`model.save(path, zipped=False)`): a directory with a `config.json`."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_MEMBER))


def import_h5py() -> Optional[ModuleType]:
    """h5py, or None where it is missing (Keras 3 requires it, so it rarely is)."""
    try:
        import h5py
    except ImportError:
        return None
    return h5py  # type: ignore[no-any-return]


def damage(path: str) -> Optional[str]:
    """The message of a `DamagedFileError` for the file at `path`, or None if nothing is found damaged
    (or it is not examined)."""
    if is_remote(path):
        return None
    if os.path.isdir(path):
        if not is_keras_directory(path):
            return None  # a SavedModel, an Orbax checkpoint: Keras' error says what it does not load
        found = _directory_damage(path)
        expected = "an intact model directory, as `model.save(path, zipped=False)` writes it"
    elif path.endswith(".keras"):
        found = _archive_damage(path)
        expected = "an intact `.keras` zip archive, as `model.save` writes it"
    elif path.endswith((".h5", ".hdf5")):
        with open(path, "rb") as file:
            found = _hdf5_damage(file)
        found = None if found is None else f"It {found}"
        if path.endswith(".weights.h5"):
            expected = "an intact HDF5 weights file, as `model.save_weights` writes it"
        else:
            expected = "an intact HDF5 file"
    else:
        return None
    if found is None:
        return None
    return (
        f"Damaged file received: {path!r}. {found}. Expected {expected}. "
        "Load an intact copy (an earlier checkpoint or backup) instead."
    )


def _archive_damage(path: str) -> Optional[str]:
    """What is damaged in the zip archive of a `.keras` file, its members included."""
    with open(path, "rb") as file:
        start = file.read(len(_HDF5_SIGNATURE))
    if not start:
        return "It is empty (0 bytes), as a write that never began leaves it"
    if not zipfile.is_zipfile(path):
        if start.startswith(_ZIP_LOCAL_HEADER):
            instead = (
                ", but the start of one: its end (the central directory) is missing, as a write or copy "
                "cut short leaves it"
            )
        elif start == _HDF5_SIGNATURE:
            instead = ", but an HDF5 file (a legacy `.h5` model or a `.weights.h5` file, renamed?)"
        else:
            instead = f": its first bytes are {start!r}"
        return f"It is not a zip archive, which a `.keras` file is{instead}"
    try:
        with zipfile.ZipFile(path) as archive:
            bad_member = archive.testzip()
            if bad_member is not None:
                return f"Its member {bad_member!r} {_bad_member_damage(path, archive.getinfo(bad_member))}"
            names = archive.namelist()
            if CONFIG_MEMBER not in names:
                return f"It has no member {CONFIG_MEMBER!r} (the model's config), which every `.keras` file holds"
            config_damage = _config_damage(archive.read(CONFIG_MEMBER))
            if config_damage is not None:
                return f"Its member {CONFIG_MEMBER!r} {config_damage}"
            if not any(name in names for name in _WEIGHTS_MEMBERS):
                return f"It has no member {WEIGHTS_MEMBER!r} (the model's weights), which every `.keras` file holds"
            if WEIGHTS_MEMBER not in names:
                return None
            weights = io.BytesIO(archive.read(WEIGHTS_MEMBER))
    # An archive whose central directory lists members its body does not hold.
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        return f"Its zip archive cannot be read ({type(error).__name__}: {error})"
    damage = _hdf5_damage(weights)
    return None if damage is None else f"Its member {WEIGHTS_MEMBER!r} {damage}"


def _bad_member_damage(path: str, member: zipfile.ZipInfo) -> str:
    """How a member that `ZipFile.testzip` reports is damaged: its local header, or its bytes (CRC-32)."""
    name = member.filename.encode("utf-8" if member.flag_bits & 0x800 else "cp437")
    with open(path, "rb") as file:
        file.seek(member.header_offset)
        header = file.read(30 + len(name))
    intact = (
        len(header) == 30 + len(name)
        and header.startswith(_ZIP_LOCAL_HEADER)
        and struct.unpack("<H", header[26:28])[0] == len(name)
        and header[30:] == name
    )
    if not intact:
        return "has a corrupted header in the zip archive (corrupted bytes)"
    return "fails the zip archive's CRC-32 check (corrupted bytes)"


def _config_damage(data: bytes) -> Optional[str]:
    """What is wrong with the bytes of a `config.json`, as a predicate, or None if they are a JSON object."""
    try:
        config = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        return "is not UTF-8 text, which JSON is"
    except json.JSONDecodeError as error:
        return f"is not JSON: invalid at line {error.lineno}, column {error.colno}"
    if not isinstance(config, dict):
        return f"holds a JSON {type(config).__name__}, where a model's config is a JSON object"
    return None


def _directory_damage(path: str) -> Optional[str]:
    """What is damaged in a model saved unzipped: its `config.json` and its weights."""
    with open(os.path.join(path, CONFIG_MEMBER), "rb") as file:
        config_damage = _config_damage(file.read())
    if config_damage is not None:
        return f"Its file {CONFIG_MEMBER!r} {config_damage}"
    names = os.listdir(path)
    if not any(name in names for name in _WEIGHTS_MEMBERS):
        return f"It has no file {WEIGHTS_MEMBER!r} (the model's weights) beside its {CONFIG_MEMBER!r}"
    if WEIGHTS_MEMBER not in names:
        return None
    with open(os.path.join(path, WEIGHTS_MEMBER), "rb") as file:
        damage = _hdf5_damage(file)
    return None if damage is None else f"Its file {WEIGHTS_MEMBER!r} {damage}"


def _hdf5_damage(file: BinaryIO) -> Optional[str]:
    """What is damaged in an HDF5 file, as a predicate ("is cut short ..."), or None: its signature,
    its length against its superblock's record, then everything h5py reads."""
    size = file.seek(0, io.SEEK_END)
    if size == 0:
        return "is empty (0 bytes), as a write that never began leaves it"
    signature_at = _hdf5_signature_offset(file, size)
    if signature_at is None:
        file.seek(0)
        start = file.read(len(_HDF5_SIGNATURE))
        hint = " (a zip archive: a `.keras` file, renamed?)" if start.startswith(_ZIP_LOCAL_HEADER) else ""
        return f"is not an HDF5 file: it has no HDF5 signature, and its first bytes are {start!r}{hint}"
    truncation = _hdf5_truncation(file, signature_at, size)
    if truncation is not None:
        return truncation
    h5py = import_h5py()
    if h5py is None:
        return None

    def read(name: str, item: Any) -> None:
        dict(item.attrs)
        if isinstance(item, h5py.Dataset):
            item[()]

    file.seek(0)
    try:
        with h5py.File(file, "r") as hdf5:
            dict(hdf5.attrs)
            hdf5.visititems(read)
    # A damaged structure surfaces from h5py as OSError, RuntimeError,
    # KeyError, ValueError or TypeError, depending on which bytes were hit.
    except Exception as error:
        first_line = str(error).splitlines()[0] if str(error) else ""
        return f"has HDF5 content that cannot be read ({type(error).__name__}: {first_line})"
    return None


def _hdf5_signature_offset(file: BinaryIO, size: int) -> Optional[int]:
    """Where the HDF5 signature is: at byte 0, 512, 1024, 2048, ... (after a user block), or None."""
    offset = 0
    while offset + len(_HDF5_SIGNATURE) <= size:
        file.seek(offset)
        if file.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
            return offset
        offset = 512 if offset == 0 else 2 * offset
    return None


def _hdf5_truncation(file: BinaryIO, signature_at: int, size: int) -> Optional[str]:
    """How an HDF5 file is cut short, read from its superblock's end-of-file address, or None.

    The superblock (HDF5 File Format Specification, section II.A) follows
    the signature: its version, then, at a place the version fixes, three
    addresses of "size of offsets" bytes each, little-endian: the base
    address, another, and the end-of-file address, relative to the base.
    """
    file.seek(signature_at + len(_HDF5_SIGNATURE))
    head = file.read(8)
    if len(head) < 8:
        return f"is cut short (a truncated file): {size} bytes, which end inside its HDF5 superblock"
    version = head[0]
    if version in (0, 1):
        offset_size, addresses_at = head[5], signature_at + (24 if version == 0 else 28)
    elif version in (2, 3):
        offset_size, addresses_at = head[1], signature_at + 12
    else:
        return None  # a superblock version this reader does not know: h5py's reading decides
    if offset_size not in (2, 4, 8):
        return None
    file.seek(addresses_at)
    addresses = file.read(3 * offset_size)
    if len(addresses) < 3 * offset_size:
        return f"is cut short (a truncated file): {size} bytes, which end inside its HDF5 superblock"
    base = int.from_bytes(addresses[:offset_size], "little")
    end = int.from_bytes(addresses[2 * offset_size :], "little")
    if end == (1 << (8 * offset_size)) - 1:
        return None  # the undefined address
    if size < base + end:
        return f"is cut short (a truncated file): {size} bytes, of the {base + end} its HDF5 superblock records"
    return None
