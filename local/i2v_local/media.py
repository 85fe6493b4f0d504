"""Probe a media file with the ffmpeg binary bundled by imageio-ffmpeg (no ffprobe needed)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import imageio_ffmpeg

_DURATION = re.compile(r"Duration:\s*(\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
# e.g. "Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 854x480, ..."
_VIDEO = re.compile(r"Stream #\d+:\d+\S*: Video: (\w+)(.*)")
_SIZE = re.compile(r"\b(\d{2,5})x(\d{2,5})\b")
_AUDIO = re.compile(r"Stream #\d+:\d+\S*: Audio: ")


class ProbeError(ValueError):
    """The file is missing or ffmpeg finds no video stream in it."""


def parse_ffmpeg_info(text: str) -> dict:
    """Read codec, size, duration and audio presence from `ffmpeg -i` stderr."""
    video = _VIDEO.search(text)
    if not video:
        raise ProbeError("no video stream found")
    size = _SIZE.search(video.group(2))
    if not size:
        raise ProbeError("video stream has no dimensions")
    duration = _DURATION.search(text)
    seconds = None
    if duration:
        hours, minutes, secs = duration.groups()
        seconds = round(int(hours) * 3600 + int(minutes) * 60 + float(secs), 3)
    return {
        "codec": video.group(1),
        "width": int(size.group(1)),
        "height": int(size.group(2)),
        "duration_seconds": seconds,
        "has_audio": bool(_AUDIO.search(text)),
    }


def probe(path: str | Path) -> dict:
    """dict(codec, width, height, duration_seconds, has_audio) for a video file."""
    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"{path} does not exist")
    # With no output file ffmpeg exits non-zero after printing the input's description.
    completed = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    try:
        return parse_ffmpeg_info(completed.stderr.decode("utf-8", "replace"))
    except ProbeError as exc:
        raise ProbeError(f"{path.name}: {exc}") from None
