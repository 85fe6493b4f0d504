"""Decode and normalise an uploaded image with Pillow before anything is paid for.

Both providers take JPEG, PNG or WebP up to 10 MB (10,000,000 bytes). An image they can take as it is goes
through with its pixels untouched, minus its metadata (EXIF with the GPS position, XMP, text:
see i2v.metadata); anything else that can be fixed (EXIF rotation, alpha, CMYK, 16-bit,
animation, too many bytes) becomes a JPEG that fits; anything that cannot (empty, corrupt,
another format) raises ImageError with a message written for the person who uploaded.
"""

import io
import math
import struct
from dataclasses import dataclass, field

from aws_lambda_powertools import Logger
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from i2v.errors import ImageError
from i2v.metadata import strip_metadata

logger = Logger(child=True)

# The providers' limit is 10 MB in decimal bytes, not 10 MiB.
DEFAULT_MAX_BYTES = 10_000_000
# Pillow only refuses images above ~179 MP, but one of 100+ MP decoded at full size can exhaust
# the submit function's memory. Above this cap JPEGs are decoded at a reduced scale, other
# formats are refused.
MAX_DECODE_PIXELS = 40_000_000

# Pillow format name -> (content type, file extension)
ACCEPTED_FORMATS = {
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
}
# Many cameras and phones write MPO: a JPEG followed by more pictures. Its first picture is
# what the person sees, so it is accepted and re-encoded as a plain JPEG (see _reasons_to_reencode).
_JPEG_VARIANTS = {"MPO"}
ACCEPTED_NAMES = "JPEG, PNG or WebP"

# Modes a provider takes as they are; everything else (RGBA, LA, CMYK, I;16, F, ...) is re-encoded.
_PLAIN_MODES = {"RGB", "L", "P", "1"}

# Re-encoding: try these JPEG qualities, then shrink the picture and try again.
_QUALITIES = (90, 80, 70)
_MIN_SIDE_PX = 256

# What Pillow raises on bytes it cannot decode: it has no single base class for these.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error)


@dataclass
class PreparedImage:
    body: bytes
    content_type: str
    extension: str
    width: int
    height: int
    format: str
    reencoded: bool
    warnings: list[str] = field(default_factory=list)


def prepare_image(data: bytes, *, min_recommended_px: int, max_bytes: int = DEFAULT_MAX_BYTES) -> PreparedImage:
    """Return the image a provider should receive, or raise ImageError saying why there is none."""
    if not data:
        raise ImageError("the upload is empty (0 bytes): there is no image to turn into a video", code="EmptyObject")

    image, full_size = _decode(data)
    warnings: list[str] = []

    reasons = _reasons_to_reencode(image, len(data), max_bytes)
    if image.size != full_size:
        reasons.append("too many pixels")
    stripped = None if reasons else _without_metadata(data, image)
    if stripped is None and not reasons:
        reasons.append("metadata that cannot be removed losslessly")
    if reasons:
        logger.info("Re-encoding the image as JPEG", extra={"reasons": reasons, "source_format": image.format})
        decoded_size = image.size
        image = ImageOps.exif_transpose(image)
        # The upload's own dimensions, turned the way the picture is viewed.
        original_size = full_size if image.size == decoded_size else full_size[::-1]
        body, image_size = _encode_jpeg_under(_flatten_to_rgb(image), max_bytes)
        if image_size != original_size:
            warnings.append(
                f"image was downscaled from {original_size[0]}x{original_size[1]} to "
                f"{image_size[0]}x{image_size[1]} to stay under {MAX_DECODE_PIXELS / 1e6:g} megapixels "
                f"and {max_bytes / 1e6:g} MB"
            )
        width, height = image_size
        prepared = PreparedImage(body, "image/jpeg", "jpg", width, height, "JPEG", True, warnings)
    else:
        # Not re-encoded: the format is one of ACCEPTED_FORMATS and the stripped copy decoded.
        assert stripped is not None and image.format is not None
        content_type, extension = ACCEPTED_FORMATS[image.format]
        width, height = image.size
        prepared = PreparedImage(stripped, content_type, extension, width, height, image.format, False, warnings)

    if min(width, height) < min_recommended_px:
        warnings.append(
            f"image is {width}x{height}, below the {min_recommended_px}x{min_recommended_px} the provider recommends"
        )
    return prepared


def _without_metadata(data: bytes, image: Image.Image) -> bytes | None:
    """The upload minus its metadata, checked to decode to the same picture; None when that fails
    (the caller then re-encodes, which writes no metadata either)."""
    try:
        stripped = strip_metadata(data, image.format or "")
        if stripped == data:
            return data
        with Image.open(io.BytesIO(stripped)) as check:
            check.load()
            if check.size != image.size or check.mode != image.mode:
                return None
    except (ValueError, *_DECODE_ERRORS):
        logger.warning("Could not remove the image's metadata losslessly", extra={"format": image.format})
        return None
    logger.info("Image metadata removed", extra={"bytes_before": len(data), "bytes_after": len(stripped)})
    return stripped


def _decode(data: bytes) -> tuple[Image.Image, tuple[int, int]]:
    """Open and fully decode the image, so truncated or corrupt files fail here and not at the provider.

    Returns the image and the upload's stored dimensions: the image is smaller when a JPEG over
    MAX_DECODE_PIXELS was decoded at a reduced scale. The pixel count is checked before decoding.
    """
    try:
        image = Image.open(io.BytesIO(data))
        image_format = image.format
        if image_format not in ACCEPTED_FORMATS and image_format not in _JPEG_VARIANTS:
            raise ImageError(
                f"the upload is a {image_format} image; only {ACCEPTED_NAMES} images are accepted",
                code="UnsupportedFormat",
            )
        full_size = image.size
        reduce_to = _size_within_cap(image_format, full_size)
        # verify() checks structure (e.g. PNG checksums) but leaves the image unusable: reopen to decode.
        image.verify()
        image = Image.open(io.BytesIO(data))
        if reduce_to:
            # JPEG can decode at 1/2, 1/4 or 1/8 scale directly, never holding the full picture.
            image.draft("RGB", reduce_to)
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageError(f"the image has too many pixels to process safely ({exc})", code="ImageTooLarge") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            "the upload is not an image Pillow can read (its bytes match no known image format)",
            code="CorruptImage",
        ) from exc
    except _DECODE_ERRORS as exc:
        raise ImageError(
            f"the upload is not an image Pillow can read, or it is truncated or corrupt: {exc}",
            code="CorruptImage",
        ) from exc
    return image, full_size


def _size_within_cap(image_format: str, size: tuple[int, int]) -> tuple[int, int] | None:
    """None when the image may be decoded as it is; else the size to ask Image.draft for.

    Raises ImageError for a non-JPEG above the cap, or a JPEG even 1/8 scale cannot bring under it.
    """
    width, height = size
    if width * height <= MAX_DECODE_PIXELS:
        return None
    if image_format == "JPEG" or image_format in _JPEG_VARIANTS:
        for scale in (2, 4, 8):
            # draft() picks the largest scale whose result is at least the requested size.
            if math.ceil(width / scale) * math.ceil(height / scale) <= MAX_DECODE_PIXELS:
                return max(1, width // scale), max(1, height // scale)
    raise ImageError(
        f"the image is {width}x{height} ({width * height / 1e6:.1f} megapixels); {image_format} images over "
        f"{MAX_DECODE_PIXELS / 1e6:g} megapixels are refused (larger JPEGs are scaled down)",
        code="ImageTooLarge",
    )


def _reasons_to_reencode(image: Image.Image, size: int, max_bytes: int) -> list[str]:
    reasons = []
    if size > max_bytes:
        reasons.append("too many bytes")
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        reasons.append("EXIF orientation")
    if _has_alpha(image):
        reasons.append("transparency")
    if image.mode not in _PLAIN_MODES:
        reasons.append(f"mode {image.mode}")
    if getattr(image, "is_animated", False) or image.format in _JPEG_VARIANTS:
        reasons.append("several frames")
    return reasons


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _flatten_to_rgb(image: Image.Image) -> Image.Image:
    """An RGB picture of the first frame: alpha flattened on white, 16-bit scaled to 8-bit."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # convert("L") would clip 16-bit values at 255 (a white picture): scale them first.
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _encode_jpeg_under(image: Image.Image, max_bytes: int) -> tuple[bytes, tuple[int, int]]:
    """Encode as JPEG, lowering quality and then dimensions until the bytes fit."""
    while True:
        body = b""
        for quality in _QUALITIES:
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=quality, optimize=True)
            body = buffer.getvalue()
            if len(body) <= max_bytes:
                return body, image.size
        # Bytes grow roughly with pixel count: aim a little under the limit, at least 15% smaller.
        scale = min(0.85, math.sqrt(max_bytes / len(body)) * 0.95)
        width, height = (max(1, int(side * scale)) for side in image.size)
        if min(width, height) < _MIN_SIDE_PX:
            raise ImageError(
                f"the image cannot be made smaller than {max_bytes} bytes without losing too much detail",
                code="ImageTooLarge",
            )
        image = image.resize((width, height), Image.Resampling.LANCZOS)


THUMBNAIL_MAX_SIDE = 640


def make_thumbnail(data: bytes, *, max_side: int = THUMBNAIL_MAX_SIDE) -> bytes:
    """A JPEG poster of the (normalised) input, for providers that return no thumbnail:
    the video opens on this picture, so it stands for the video in a list or an email."""
    with Image.open(io.BytesIO(data)) as source:
        image = source.convert("RGB")
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85, optimize=True)
    return buffer.getvalue()
