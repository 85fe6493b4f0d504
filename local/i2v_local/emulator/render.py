"""Turn one still image into a short H.264 MP4 (a slow pan) and a JPEG thumbnail.

The emulator's stand-in for a video model: the output is a real, playable file with the
duration, dimensions and audio track the request asked for, so everything downstream
(streaming into S3, probing, manifests) is exercised for real.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
from PIL import Image, ImageOps

FPS = 24
PAN_SCALE = 1.15  # the image is scaled to this much of the frame, and the frame pans across it
RENDER_NICENESS = 19  # ffmpeg yields to everything else on the machine (see _yield_cores)

# Resolution names the short side of the frame; the long side follows the aspect ratio.
SHORT_SIDE = {"480p": 480, "720p": 720, "1080p": 1080}


class RenderError(RuntimeError):
    """ffmpeg could not produce the video."""


def ffmpeg_exe() -> str:
    """The ffmpeg binary bundled with imageio-ffmpeg (no system ffmpeg needed)."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def _even(value: float) -> int:
    # H.264 with yuv420p needs even dimensions.
    return max(2, 2 * round(value / 2))


def output_dimensions(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """(width, height) for a resolution ("480p") and aspect ratio ("16:9"): short side = resolution."""
    try:
        short = SHORT_SIDE[resolution]
    except KeyError:
        raise ValueError(f"unknown resolution {resolution!r}") from None
    try:
        w_ratio, h_ratio = (int(part) for part in aspect_ratio.split(":"))
    except (ValueError, AttributeError):
        raise ValueError(f"unknown aspect ratio {aspect_ratio!r}") from None
    if w_ratio <= 0 or h_ratio <= 0:
        raise ValueError(f"unknown aspect ratio {aspect_ratio!r}")
    ratio = Fraction(w_ratio, h_ratio)
    if ratio >= 1:
        return _even(short * ratio), short
    return short, _even(short / ratio)


def _cover(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale and centre-crop so the image fills width x height without bars."""
    image = ImageOps.exif_transpose(image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS)


def render_video(
    image_bytes: bytes,
    video_path: str | Path,
    thumbnail_path: str | Path,
    *,
    width: int,
    height: int,
    duration: int | float,
    sound: bool = False,
    timeout: float = 300.0,
    cancel: threading.Event | None = None,
) -> None:
    """Render `duration` seconds of slow pan at width x height, 24 fps, plus a thumbnail.

    Setting `cancel` terminates ffmpeg and raises RenderError; either way ffmpeg has exited
    when this returns or raises, so the caller may delete the output directory.
    Raises PIL.UnidentifiedImageError for undecodable input, ValueError for odd dimensions and
    RenderError when ffmpeg fails.
    """
    if width % 2 or height % 2:
        raise ValueError(f"H.264 yuv420p needs even dimensions, not {width}x{height}")
    frames = max(1, round(duration * FPS))
    # The frame pans sideways across the image scaled to PAN_SCALE of it, in even pixel steps
    # (yuv420p): a crop of one decoded frame, looped. It costs about 0.6 of the CPU of a zoom
    # (zoompan rescales every frame), and the renders share two cores with the whole local stack.
    still_width, still_height = _even(width * PAN_SCALE), _even(height * PAN_SCALE)
    top = (still_height - height) // 4 * 2
    with Image.open(io.BytesIO(image_bytes)) as source:
        framed = _cover(source, still_width, still_height)
    framed.crop((0, top, width, top + height)).save(thumbnail_path, "JPEG", quality=85)  # the first frame

    with tempfile.TemporaryDirectory(prefix="i2v-render-") as tmp:
        # Uncompressed: ffmpeg reads it once, and a PNG encode took 50 times as long (~65 ms).
        still = Path(tmp) / "still.ppm"
        framed.save(still, "PPM")
        video_filter = (
            f"format=yuv420p,loop=loop={frames - 1}:size=1:start=0,setpts=N/{FPS}/TB,"
            f"crop={width}:{height}:x='2*trunc((iw-ow)*n/{frames}/2)':y={top}"
        )
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(still)]
        if sound:
            # A soft 220 Hz tone: a real AAC track for players and probes to find.
            cmd += ["-f", "lavfi", "-i", f"sine=frequency=220:sample_rate=44100:duration={duration}"]
        cmd += ["-vf", video_filter, "-frames:v", str(frames), "-r", str(FPS)]
        cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "26", "-pix_fmt", "yuv420p"]
        if sound:
            cmd += ["-c:a", "aac", "-b:a", "64k", "-af", "volume=0.1", "-t", str(duration)]
        else:
            cmd += ["-an"]
        cmd += ["-movflags", "+faststart", "-f", "mp4", str(video_path)]
        returncode, stderr = _run(cmd, timeout, cancel)
        if returncode != 0:
            detail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
            raise RenderError(f"ffmpeg exited with {returncode}: {detail[0]}")


def _yield_cores(pid: int) -> None:
    """A render farm has cores of its own; here the encode takes only what everything else
    (the process serving the provider's and, in the local stack, AWS's APIs, and the Lambda
    environments) leaves. Under Linux's autogroup scheduling a nice value only weighs inside
    its session, so ffmpeg runs in a session of its own and that session gets the nice value."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, pid, RENDER_NICENESS)
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(str(RENDER_NICENESS))


def _run(cmd: list[str], timeout: float, cancel: threading.Event | None) -> tuple[int, bytes]:
    """(returncode, stderr) of cmd; RenderError if it overruns timeout or cancel is set."""
    deadline = time.monotonic() + timeout
    with subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    ) as process:
        _yield_cores(process.pid)
        try:
            while True:
                try:
                    # A short wait, so a cancel is noticed soon; communicate() keeps any output.
                    _, stderr = process.communicate(timeout=0.5)
                    return process.returncode, stderr
                except subprocess.TimeoutExpired:
                    if cancel is not None and cancel.is_set():
                        raise RenderError("render cancelled") from None
                    if time.monotonic() > deadline:
                        raise RenderError(f"ffmpeg did not finish within {timeout:.0f} s") from None
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.communicate(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.communicate()
