"""Time to normalise a 2 MP and a 24 MP JPEG with images.prepare_image.

Two cases per size: an image a provider takes as it is (decode and checks only), and the
same image with an EXIF orientation tag (decode, rotate, re-encode as JPEG). Figures are
the median of a few runs; the ratio is compared with the 12x difference in pixels.
"""

import io
import statistics
import time

from PIL import Image, ImageDraw, ImageFilter

from i2v.images import prepare_image

SIZES = {"2 MP": (1732, 1155), "24 MP": (6000, 4000)}
RUNS = 3


def _photo_like(size: tuple[int, int]) -> Image.Image:
    """Smooth gradients plus mild noise: compresses like a photograph, unlike pure noise."""
    width, height = size
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    for step in range(0, width, max(1, width // 12)):
        draw.ellipse((step, height // 4, step + width // 8, height // 4 + width // 8), fill=(40 + step % 200, 120, 200))
    noise = Image.effect_noise(size, 24).convert("RGB")
    return Image.blend(image.filter(ImageFilter.GaussianBlur(2)), noise, 0.15)


def _jpeg(image: Image.Image, *, rotated: bool) -> bytes:
    buffer = io.BytesIO()
    params = {"quality": 90}
    if rotated:
        exif = Image.Exif()
        exif[0x0112] = 6
        params["exif"] = exif.tobytes()
    image.save(buffer, "JPEG", **params)
    return buffer.getvalue()


def _median_seconds(data: bytes) -> float:
    timings = []
    for _ in range(RUNS):
        started = time.perf_counter()
        prepare_image(data, min_recommended_px=1024)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    print(f"Normalising JPEGs with images.prepare_image (median of {RUNS} runs)")
    print(f"{'image':>6} {'bytes':>10} {'as is':>9} {'EXIF-rotated (re-encode)':>26}")
    results = {}
    for label, size in SIZES.items():
        image = _photo_like(size)
        plain, rotated = _jpeg(image, rotated=False), _jpeg(image, rotated=True)
        results[label] = (_median_seconds(plain), _median_seconds(rotated))
        print(f"{label:>6} {len(plain) / 1e6:>8.1f} MB {results[label][0]:>7.3f} s {results[label][1]:>24.3f} s")
    (small_plain, small_rot), (large_plain, large_rot) = results.values()
    pixels = (SIZES["24 MP"][0] * SIZES["24 MP"][1]) / (SIZES["2 MP"][0] * SIZES["2 MP"][1])
    print(
        f"24 MP / 2 MP: pixels {pixels:.1f}x, time as is {large_plain / small_plain:.1f}x, "
        f"time re-encoded {large_rot / small_rot:.1f}x"
    )


if __name__ == "__main__":
    main()
