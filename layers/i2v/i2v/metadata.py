"""Remove metadata (EXIF with its GPS position, XMP, IPTC, comments, text) from an image without
re-encoding it: the pixels the provider receives are exactly the ones uploaded.

Only images that need no re-encoding come here, and those have no EXIF rotation to keep
(a rotated image is re-encoded upright, and re-encoding writes no metadata), so nothing of
EXIF is needed: it is dropped whole. What decoding depends on is kept: the colour profile
(ICC), JFIF and Adobe markers in JPEG, colour and transparency chunks in PNG.
"""

import struct

JPEG_SOI = b"\xff\xd8"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# JPEG: markers without a length field, and the start of scan (after it: entropy-coded data).
_STANDALONE = {0x01, *range(0xD0, 0xD8)}
_SOS, _EOI, _APP0, _APP2, _APP14, _COM = 0xDA, 0xD9, 0xE0, 0xE2, 0xEE, 0xFE
# PNG ancillary chunks that carry metadata (EXIF, text, modification time).
_PNG_METADATA = {b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"}
# WebP (extended format): metadata chunks, and their flags in the VP8X header.
_WEBP_METADATA = {b"EXIF", b"XMP "}
_VP8X_EXIF_FLAG, _VP8X_XMP_FLAG = 0x08, 0x04


def strip_metadata(data: bytes, image_format: str) -> bytes:
    """``data`` without its metadata; raises ValueError when the container cannot be walked."""
    if image_format == "JPEG":
        return _strip_jpeg(data)
    if image_format == "PNG":
        return _strip_png(data)
    if image_format == "WEBP":
        return _strip_webp(data)
    raise ValueError(f"no metadata stripping for {image_format}")


def _keep_jpeg_segment(marker: int, segment: bytes) -> bool:
    if marker == _COM:
        return False
    if 0xE0 <= marker <= 0xEF:  # APPn
        if marker == _APP2:
            return segment[4:16] == b"ICC_PROFILE\x00"
        return marker in (_APP0, _APP14)  # JFIF, Adobe (colour transform)
    return True  # tables, frame headers: needed to decode


def _strip_jpeg(data: bytes) -> bytes:
    if not data.startswith(JPEG_SOI):
        raise ValueError("not a JPEG")
    out = bytearray(JPEG_SOI)
    pos = 2
    while pos < len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"JPEG marker expected at byte {pos}")
        while pos + 1 < len(data) and data[pos + 1] == 0xFF:  # fill bytes
            pos += 1
        if pos + 1 >= len(data):
            raise ValueError("JPEG ends inside a marker")
        marker = data[pos + 1]
        if marker in (_SOS, _EOI):
            out += data[pos:]  # the image data (and anything after it), untouched
            return bytes(out)
        if marker in _STANDALONE:
            out += data[pos : pos + 2]
            pos += 2
            continue
        if pos + 4 > len(data):
            raise ValueError("JPEG ends inside a segment header")
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        end = pos + 2 + length
        if length < 2 or end > len(data):
            raise ValueError("JPEG segment runs past the end of the file")
        if _keep_jpeg_segment(marker, data[pos:end]):
            out += data[pos:end]
        pos = end
    raise ValueError("JPEG has no image data")


def _strip_png(data: bytes) -> bytes:
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG")
    out = bytearray(PNG_SIGNATURE)
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length  # length, type, data, CRC
        if end > len(data):
            raise ValueError("PNG chunk runs past the end of the file")
        if kind not in _PNG_METADATA:
            out += data[pos:end]
        if kind == b"IEND":
            return bytes(out)
        pos = end
    raise ValueError("PNG has no IEND chunk")


def _strip_webp(data: bytes) -> bytes:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("not a WebP")
    (riff_size,) = struct.unpack("<I", data[4:8])
    end_of_riff = min(len(data), 8 + riff_size)
    chunks = []
    pos = 12
    while pos + 8 <= end_of_riff:
        kind, size = struct.unpack("<4sI", data[pos : pos + 8])
        end = pos + 8 + size + (size & 1)  # chunks are padded to an even size
        if end > end_of_riff:
            raise ValueError("WebP chunk runs past the end of the file")
        chunk = bytearray(data[pos:end])
        if kind == b"VP8X":
            chunk[8] &= ~(_VP8X_EXIF_FLAG | _VP8X_XMP_FLAG) & 0xFF
        if kind not in _WEBP_METADATA:
            chunks.append(bytes(chunk))
        pos = end
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body
