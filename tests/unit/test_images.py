"""Image normalisation: what passes through as is, what is re-encoded, and what is refused."""

import io
import os

import pytest
from PIL import Image

from i2v.errors import ImageError
from i2v.images import DEFAULT_MAX_BYTES, _size_within_cap, prepare_image


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def solid(size=(1200, 900), mode="RGB", color="steelblue") -> Image.Image:
    return Image.new(mode, size, color)


def decoded(body: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(body))
    image.load()
    return image


@pytest.mark.parametrize(
    ("fmt", "content_type", "extension"),
    [("JPEG", "image/jpeg", "jpg"), ("PNG", "image/png", "png"), ("WEBP", "image/webp", "webp")],
)
def test_accepted_formats_pass_through_unchanged(fmt, content_type, extension):
    data = encode(solid(), fmt)

    prepared = prepare_image(data, min_recommended_px=512)

    assert prepared.body == data
    assert (prepared.content_type, prepared.extension, prepared.format) == (content_type, extension, fmt)
    assert (prepared.width, prepared.height) == (1200, 900)
    assert prepared.reencoded is False
    assert prepared.warnings == []


def test_format_is_judged_by_content_not_name():
    # A PNG is a PNG whatever the key says; the result says png.
    prepared = prepare_image(encode(solid(), "PNG"), min_recommended_px=1)
    assert prepared.extension == "png"


def test_png_with_alpha_becomes_jpeg_flattened_on_white():
    image = Image.new("RGBA", (800, 600), (255, 0, 0, 0))  # fully transparent red
    image.paste((0, 0, 255, 255), (0, 0, 400, 600))  # opaque blue left half

    prepared = prepare_image(encode(image, "PNG"), min_recommended_px=1)

    assert prepared.reencoded is True
    assert (prepared.format, prepared.content_type, prepared.extension) == ("JPEG", "image/jpeg", "jpg")
    result = decoded(prepared.body)
    assert result.format == "JPEG" and result.mode == "RGB"
    right = result.getpixel((700, 300))
    left = result.getpixel((100, 300))
    assert min(right) > 240, "transparent area should be white"
    assert left[2] > 200 and left[0] < 40, "opaque area keeps its colour"


def test_palette_png_with_transparency_is_reencoded():
    image = solid((600, 600), "P", 3)
    image.info["transparency"] = 3

    prepared = prepare_image(encode(image, "PNG", transparency=3), min_recommended_px=1)

    assert prepared.reencoded is True
    assert decoded(prepared.body).mode == "RGB"


def test_cmyk_jpeg_is_reencoded_to_rgb():
    prepared = prepare_image(encode(solid((600, 600), "CMYK", (0, 255, 255, 0)), "JPEG"), min_recommended_px=1)

    assert prepared.reencoded is True
    assert decoded(prepared.body).mode == "RGB"


def test_16_bit_png_is_scaled_not_clipped():
    image = Image.new("I;16", (600, 600), 32768)  # mid grey in 16 bits

    prepared = prepare_image(encode(image, "PNG"), min_recommended_px=1)

    assert prepared.reencoded is True
    value = decoded(prepared.body).getpixel((10, 10))
    assert all(120 <= channel <= 136 for channel in value)


def test_animated_webp_is_reencoded_as_its_first_frame():
    frames = [solid((600, 600), color=color) for color in ("red", "green", "blue")]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)

    prepared = prepare_image(data, min_recommended_px=1)

    assert prepared.reencoded is True
    red, green, blue = decoded(prepared.body).getpixel((300, 300))
    assert red > 200 and green < 60 and blue < 60


def test_camera_mpo_jpeg_is_accepted_as_its_first_picture():
    first, second = solid((800, 600), color="red"), solid((800, 600), color="blue")
    data = encode(first, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(data)).format == "MPO"

    prepared = prepare_image(data, min_recommended_px=1)

    assert (prepared.format, prepared.reencoded) == ("JPEG", True)
    result = decoded(prepared.body)
    assert result.format == "JPEG" and result.getpixel((400, 300))[0] > 200


def test_exif_rotated_jpeg_ends_upright():
    # Stored 1200 wide x 600 high, with orientation 6: the camera was held on its side.
    image = Image.new("RGB", (1200, 600), "white")
    image.paste((255, 0, 0), (0, 0, 100, 600))  # a red band on the stored left edge
    exif = Image.Exif()
    exif[0x0112] = 6
    prepared = prepare_image(encode(image, "JPEG", exif=exif.tobytes()), min_recommended_px=1)

    assert prepared.reencoded is True
    assert (prepared.width, prepared.height) == (600, 1200)
    result = decoded(prepared.body)
    assert result.size == (600, 1200)
    assert result.getexif().get(0x0112) in (None, 1)
    # Orientation 6 = rotate 90 degrees clockwise to view: the left edge ends at the top.
    assert result.getpixel((300, 20))[1] < 80
    assert min(result.getpixel((300, 1180))) > 200


def test_image_over_the_byte_limit_shrinks_under_it():
    noise = Image.frombytes("RGB", (2400, 1800), os.urandom(2400 * 1800 * 3))
    data = encode(noise, "PNG")
    assert len(data) > 10 * 1024 * 1024

    prepared = prepare_image(data, min_recommended_px=512)

    assert prepared.reencoded is True
    assert prepared.format == "JPEG"
    assert len(prepared.body) <= 10 * 1024 * 1024
    assert decoded(prepared.body).size == (prepared.width, prepared.height)


def test_downscale_when_quality_alone_is_not_enough():
    noise = Image.frombytes("RGB", (1000, 1000), os.urandom(1000 * 1000 * 3))
    data = encode(noise, "JPEG", quality=95)

    prepared = prepare_image(data, min_recommended_px=1, max_bytes=200_000)

    assert len(prepared.body) <= 200_000
    assert prepared.width < 1000 and prepared.height < 1000
    assert any("downscaled from 1000x1000" in warning for warning in prepared.warnings)


def test_image_that_cannot_fit_is_refused():
    noise = Image.frombytes("RGB", (600, 600), os.urandom(600 * 600 * 3))

    with pytest.raises(ImageError) as caught:
        prepare_image(encode(noise, "PNG"), min_recommended_px=1, max_bytes=1000)
    assert caught.value.code == "ImageTooLarge"


def test_small_image_succeeds_with_a_warning():
    prepared = prepare_image(encode(solid((640, 480)), "JPEG"), min_recommended_px=1024)

    assert prepared.reencoded is False
    assert prepared.warnings == ["image is 640x480, below the 1024x1024 the provider recommends"]


def test_zero_bytes_is_refused():
    with pytest.raises(ImageError) as caught:
        prepare_image(b"", min_recommended_px=512)
    assert caught.value.code == "EmptyObject"
    assert "empty" in caught.value.message


def test_random_bytes_are_refused():
    with pytest.raises(ImageError) as caught:
        prepare_image(os.urandom(4096), min_recommended_px=512)
    assert caught.value.code == "CorruptImage"
    assert "not an image Pillow can read" in caught.value.message


def test_truncated_jpeg_is_refused():
    noise = Image.frombytes("RGB", (800, 800), os.urandom(800 * 800 * 3))
    data = encode(noise, "JPEG")

    with pytest.raises(ImageError) as caught:
        prepare_image(data[: len(data) // 2], min_recommended_px=1)
    assert caught.value.code == "CorruptImage"
    assert "truncated" in caught.value.message


def test_png_with_corrupt_checksum_is_refused():
    data = bytearray(encode(solid((300, 300)), "PNG"))
    data[45] ^= 0xFF  # inside the first IDAT chunk: its CRC no longer matches

    with pytest.raises(ImageError) as caught:
        prepare_image(bytes(data), min_recommended_px=1)
    assert caught.value.code == "CorruptImage"


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_image_formats_are_refused_by_name(fmt):
    with pytest.raises(ImageError) as caught:
        prepare_image(encode(solid((600, 600)), fmt), min_recommended_px=1)
    assert caught.value.code == "UnsupportedFormat"
    assert fmt in caught.value.message
    assert "JPEG, PNG or WebP" in caught.value.message


def test_decompression_bomb_is_refused(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the guard trips at twice this

    with pytest.raises(ImageError) as caught:
        prepare_image(encode(solid((100, 100)), "PNG"), min_recommended_px=1)
    assert caught.value.code == "ImageTooLarge"
    assert "too many pixels" in caught.value.message


# ---------------------------------------------------------------- byte and pixel limits


def padded_jpeg(total_bytes: int) -> bytes:
    """A valid JPEG of exactly total_bytes (decoders ignore bytes after the end marker)."""
    data = encode(solid((1200, 900)), "JPEG")
    return data + b"\0" * (total_bytes - len(data))


def test_the_byte_limit_is_10_mb_not_10_mib():
    assert DEFAULT_MAX_BYTES == 10_000_000
    at_limit = prepare_image(padded_jpeg(10_000_000), min_recommended_px=1)
    assert at_limit.reencoded is False and len(at_limit.body) == 10_000_000

    over = prepare_image(padded_jpeg(10_000_001), min_recommended_px=1)
    assert over.reencoded is True
    assert len(over.body) <= 10_000_000


def test_huge_jpeg_is_decoded_at_a_reduced_scale(monkeypatch):
    data = encode(solid((9000, 9000), mode="L", color=128), "JPEG")
    full_decodes = []
    real_load = Image.Image.load

    def load(self):
        full_decodes.append(self.size)
        return real_load(self)

    monkeypatch.setattr(Image.Image, "load", load)

    prepared = prepare_image(data, min_recommended_px=1)

    assert (9000, 9000) not in full_decodes  # never held at full size
    assert prepared.reencoded is True and prepared.format == "JPEG"
    assert (prepared.width, prepared.height) == (4500, 4500)
    assert decoded(prepared.body).size == (4500, 4500)
    assert any("downscaled from 9000x9000 to 4500x4500" in warning for warning in prepared.warnings)


def test_jpeg_just_over_the_cap_is_halved():
    assert _size_within_cap("JPEG", (8000, 5001)) == (4000, 2500)
    assert _size_within_cap("JPEG", (8000, 5000)) is None  # exactly 40 MP is decoded as it is
    assert _size_within_cap("JPEG", (20000, 9000)) == (5000, 2250)  # 180 MP needs a quarter


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_huge_non_jpeg_is_refused_before_decoding(fmt):
    data = encode(solid((9000, 9000), mode="L", color=128), fmt, **({"method": 0} if fmt == "WEBP" else {}))

    with pytest.raises(ImageError) as caught:
        prepare_image(data, min_recommended_px=1)

    assert caught.value.code == "ImageTooLarge"
    assert f"9000x9000 (81.0 megapixels); {fmt} images over 40 megapixels are refused" in caught.value.message


# ---------------------------------------------------------------- issue 8, B11: no metadata reaches the provider

GPS_IFD = 0x8825


def exif_with_gps() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0131] = "CameraApp 1.0"  # Software
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (59.0, 19.0, 42.0), 3: "E", 4: (18.0, 4.0, 6.0)})
    return exif


def photo() -> Image.Image:
    """A picture with detail, so lossless and lossy handling can be told apart."""
    image = Image.effect_mandelbrot((1200, 900), (-2, -1.2, 1, 1.2), 60).convert("RGB")
    return image


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_gps_and_other_metadata_do_not_reach_the_provider(fmt):
    params = {"exif": exif_with_gps().tobytes()}
    if fmt == "PNG":
        from PIL.PngImagePlugin import PngInfo

        text = PngInfo()
        text.add_text("Comment", "taken at home, 12 Example Street")
        params["pnginfo"] = text
    if fmt == "WEBP":
        params.update(lossless=True, xmp=b"<x:xmpmeta>where: home</x:xmpmeta>")
    if fmt == "JPEG":
        params["comment"] = b"taken at home"
    data = encode(photo(), fmt, **params)
    assert decoded(data).getexif().get_ifd(GPS_IFD)  # the upload does carry a position

    prepared = prepare_image(data, min_recommended_px=512)

    assert prepared.reencoded is False and prepared.format == fmt
    image = decoded(prepared.body)
    assert not image.getexif().get_ifd(GPS_IFD)
    assert len(image.getexif()) == 0
    assert b"Exif" not in prepared.body and b"EXIF" not in prepared.body
    assert b"home" not in prepared.body and b"PhoneMaker" not in prepared.body
    # Lossless: the very same pixels.
    assert image.tobytes() == decoded(data).tobytes()


def test_icc_profile_is_kept():
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(photo(), "JPEG", exif=exif_with_gps().tobytes(), icc_profile=icc)

    prepared = prepare_image(data, min_recommended_px=512)

    assert decoded(prepared.body).info.get("icc_profile") == icc
    assert b"Exif" not in prepared.body


def test_rotated_photo_is_reencoded_without_its_gps():
    exif = exif_with_gps()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees
    data = encode(photo(), "JPEG", exif=exif.tobytes())

    prepared = prepare_image(data, min_recommended_px=512)

    assert prepared.reencoded is True
    assert not decoded(prepared.body).getexif().get_ifd(GPS_IFD)
    assert b"Exif" not in prepared.body
