"""A TFRecord reader and a ``tf.train.Example`` decoder that need neither TensorFlow nor protobuf.

TFRecord framing (TensorFlow ``core/lib/io/record_writer.cc``), per record::

    uint64 length (little-endian) | uint32 masked_crc32c(length bytes) | payload | uint32 masked_crc32c(payload)

Both checksums are verified for every record. Any damage -- a flipped byte, a file cut short, a payload that
is not a valid ``Example`` -- raises ``DataError`` naming the file, the record number (0-based) and the byte
offset at which that record starts, so a bad shard is never read as wrong data.

The ``Example`` decoder implements just the protobuf wire format the message uses (varints and
length-delimited fields, with packed or unpacked repeated scalars); YouTube-8M's video-level records
(``id``, ``labels``, ``mean_rgb``, ``mean_audio``) are its main client.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import crc32c
import numpy as np

from mtlbench.errors import DataError

_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
FeatureValue = list | np.ndarray


def masked_crc32c(data: bytes) -> int:
    """CRC32C rotated right by 15 bits plus a constant, as TFRecord stores it (``crc32c::Mask``)."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


class ProtoError(ValueError):
    """A payload that is not the protobuf message it should be; ``pos`` is the byte inside the payload."""

    def __init__(self, message: str, pos: int):
        super().__init__(f"{message} at payload byte {pos}")



def iter_records(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(record number, byte offset, payload)`` for every record of a TFRecord file, streaming.

    Raises DataError at the first record whose framing or checksums are wrong."""
    path = Path(path)
    try:
        f = open(path, "rb")  # noqa: SIM115 -- opened apart from `with f:` below so only open()'s OSError is mapped
    except OSError as e:
        raise DataError(f"{path}: cannot open TFRecord file ({e.strerror})") from None
    with f:
        index, offset = 0, 0
        while True:
            header = f.read(_HEADER.size)
            if not header:
                return
            where = f"{path}: record {index} at byte offset {offset}"
            if len(header) < _HEADER.size:
                raise DataError(f"{where}: truncated file (record header needs {_HEADER.size} bytes, "
                                f"only {len(header)} left)")
            length, length_crc = _HEADER.unpack(header)
            if masked_crc32c(header[:8]) != length_crc:
                raise DataError(f"{where}: length checksum mismatch (corrupt record header)")
            body = f.read(length + _FOOTER.size)
            if len(body) < length + _FOOTER.size:
                raise DataError(f"{where}: truncated file (record needs {length + _FOOTER.size} bytes after "
                                f"its header, only {len(body)} left)")
            payload = body[:length]
            (payload_crc,) = _FOOTER.unpack_from(body, length)
            if masked_crc32c(payload) != payload_crc:
                raise DataError(f"{where}: payload checksum mismatch (corrupt record data)")
            yield index, offset, payload
            index += 1
            offset += _HEADER.size + length + _FOOTER.size


def count_records(path: Path) -> int:
    """Number of records, with every checksum verified."""
    return sum(1 for _ in iter_records(path))


# -- protobuf wire format ---------------------------------------------------------------------------------------

def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= end:
            raise ProtoError("truncated varint", pos)
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtoError("varint longer than 10 bytes", pos)


def _fields(buf: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(field number, wire type, value or start, end)`` for each field in ``buf[pos:end]``.

    For length-delimited fields (wire type 2) the third item is the start of the bytes; for the scalar wire
    types it is the value itself (fixed-width values as raw little-endian integers)."""
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield field, wire, value, pos
        elif wire == 2:
            n, pos = _varint(buf, pos, end)
            if pos + n > end:
                raise ProtoError(f"field {field} claims {n} bytes but only {end - pos} remain", pos)
            yield field, wire, pos, pos + n
            pos += n
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > end:
                raise ProtoError(f"truncated fixed-width field {field}", pos)
            yield field, wire, int.from_bytes(buf[pos:pos + width], "little"), pos + width
            pos += width
        else:
            raise ProtoError(f"unsupported wire type {wire} for field {field}", pos)


def _int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _decode_list(buf: bytes, kind: int, pos: int, end: int) -> FeatureValue:
    """BytesList (kind 1), FloatList (2) or Int64List (3): repeated field 1, packed or not."""
    if kind == 1:
        return [bytes(buf[s:e]) for f, w, s, e in _fields(buf, pos, end) if f == 1 and w == 2]
    floats: list[np.ndarray] = []
    ints: list[int] = []
    for field, wire, v, e in _fields(buf, pos, end):
        if field != 1:
            continue
        if kind == 2 and wire == 2:
            if (e - v) % 4:
                raise ProtoError("packed float list length is not a multiple of 4", v)
            floats.append(np.frombuffer(buf, dtype="<f4", count=(e - v) // 4, offset=v))
        elif kind == 2 and wire == 5:
            floats.append(np.array([v], dtype="<u4").view("<f4"))
        elif kind == 3 and wire == 2:
            p = v
            while p < e:
                x, p = _varint(buf, p, e)
                ints.append(_int64(x))
        elif kind == 3 and wire == 0:
            ints.append(_int64(v))
        else:
            raise ProtoError(f"wire type {wire} is not valid in a {'float' if kind == 2 else 'int64'} list", v)
    if kind == 2:
        return np.concatenate(floats).astype(np.float32) if floats else np.zeros(0, np.float32)
    return np.asarray(ints, dtype=np.int64)


_KINDS = {1: "bytes_list", 2: "float_list", 3: "int64_list"}


def _decode_feature(buf: bytes, pos: int, end: int) -> tuple[str, FeatureValue]:
    kind_value: tuple[str, FeatureValue] | None = None
    for field, wire, s, e in _fields(buf, pos, end):
        if field in _KINDS and wire == 2:
            kind_value = (_KINDS[field], _decode_list(buf, field, s, e))
    if kind_value is None:
        raise ProtoError("feature holds none of bytes_list / float_list / int64_list", pos)
    return kind_value


def decode_example(payload: bytes) -> dict[str, tuple[str, FeatureValue]]:
    """``tf.train.Example`` -> {feature name: (kind, values)}; kind is bytes_list, float_list or int64_list.

    Example { Features features = 1; }  Features { map<string, Feature> feature = 1; }
    Feature { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    """
    out: dict[str, tuple[str, FeatureValue]] = {}
    end = len(payload)
    for field, wire, fs, fe in _fields(payload, 0, end):
        if field != 1 or wire != 2:
            continue  # unknown fields are skipped, as protobuf does
        for f2, w2, es, ee in _fields(payload, fs, fe):
            if f2 != 1 or w2 != 2:
                continue
            name, value = None, None
            for f3, w3, s, e in _fields(payload, es, ee):
                if f3 == 1 and w3 == 2:
                    name = bytes(payload[s:e]).decode("utf-8", errors="replace")
                elif f3 == 2 and w3 == 2:
                    value = _decode_feature(payload, s, e)
            if name is None or value is None:
                raise ProtoError("feature map entry without a name or a value", es)
            out[name] = value
    return out


def iter_examples(path: Path) -> Iterator[tuple[int, int, dict[str, tuple[str, FeatureValue]]]]:
    """``(record number, byte offset, decoded Example)`` for each record; DataError on any damage."""
    for index, offset, payload in iter_records(path):
        try:
            example = decode_example(payload)
        except ProtoError as e:
            raise DataError(f"{path}: record {index} at byte offset {offset}: not a valid "
                            f"tf.train.Example ({e})") from None
        yield index, offset, example
