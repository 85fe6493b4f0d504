"""Draw the demo image (a harbour at dusk, 1280x720 JPEG) with Pillow: `python make_sample.py`.

The committed harbour.jpg is this script's output, so the demo needs no downloaded media.
"""

from pathlib import Path

from PIL import Image, ImageDraw

WIDTH, HEIGHT = 1280, 720
HORIZON = 430


def draw() -> Image.Image:
    image = Image.new("RGB", (WIDTH, HEIGHT))
    pen = ImageDraw.Draw(image)
    for y in range(HORIZON):  # sky: deep blue to orange
        t = y / HORIZON
        pen.line([(0, y), (WIDTH, y)], fill=(int(30 + 220 * t), int(40 + 110 * t), int(110 - 40 * t)))
    pen.ellipse([860, 300, 1000, 440], fill=(255, 210, 120))  # the sun, half set
    for y in range(HORIZON, HEIGHT):  # water, darker towards the viewer
        t = (y - HORIZON) / (HEIGHT - HORIZON)
        pen.line([(0, y), (WIDTH, y)], fill=(int(60 - 40 * t), int(70 - 40 * t), int(120 - 50 * t)))
    for i in range(40):  # the sun's reflection
        y = HORIZON + 6 + i * 7
        half = 70 - i * 1.4
        pen.line([(930 - half, y), (930 + half, y)], fill=(240, 170, 90), width=2)
    # quay and warehouses
    pen.rectangle([0, 380, 520, HORIZON + 10], fill=(35, 30, 40))
    for x, h in ((20, 120), (140, 90), (250, 150), (390, 100)):
        pen.rectangle([x, 380 - h, x + 100, 380], fill=(50, 42, 55))
        for wy in range(380 - h + 15, 370, 25):
            for wx in range(x + 12, x + 90, 22):
                pen.rectangle([wx, wy, wx + 8, wy + 10], fill=(250, 200, 110))
    # lighthouse
    pen.polygon([(1150, HORIZON), (1190, HORIZON), (1180, 250), (1160, 250)], fill=(230, 225, 215))
    pen.rectangle([1155, 235, 1185, 250], fill=(200, 40, 40))
    pen.polygon([(1170, 200), (1150, 235), (1190, 235)], fill=(60, 50, 60))
    # two boats
    for bx, size in ((600, 1.0), (760, 0.6)):
        hull = [
            (bx, 470),
            (bx + 160 * size, 470),
            (bx + 130 * size, 470 + 30 * size),
            (bx + 25 * size, 470 + 30 * size),
        ]
        pen.polygon(hull, fill=(120, 40, 35))
        pen.line([(bx + 80 * size, 470), (bx + 80 * size, 470 - 140 * size)], fill=(40, 30, 30), width=3)
        pen.polygon(
            [(bx + 84 * size, 330 * size + 470 * (1 - size) + 0), (bx + 84 * size, 462), (bx + 150 * size, 462)],
            fill=(235, 230, 215),
        )
    return image


if __name__ == "__main__":
    target = Path(__file__).with_name("harbour.jpg")
    draw().save(target, "JPEG", quality=85, optimize=True)
    print(f"wrote {target} ({target.stat().st_size} bytes)")
