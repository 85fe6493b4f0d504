"""The MP4 probe helper and the emulator's renderer, on files rendered here (no network)."""

import subprocess

import pytest
from PIL import Image, ImageChops, ImageStat, UnidentifiedImageError

from i2v_local.emulator import render
from i2v_local.emulator.render import RenderError, output_dimensions, render_video
from i2v_local.media import ProbeError, parse_ffmpeg_info, probe
from tests.fixtures import jpeg


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Two small clips: 3 s silent 16:9 and 4 s with sound 9:16."""
    folder = tmp_path_factory.mktemp("renders")
    silent, sound = folder / "silent.mp4", folder / "sound.mp4"
    render_video(jpeg(320, 240), silent, folder / "silent.jpg", width=192, height=108, duration=3, sound=False)
    render_video(jpeg(320, 240), sound, folder / "sound.jpg", width=108, height=192, duration=4, sound=True)
    return folder


def test_probe_reads_codec_size_duration_and_no_audio(rendered):
    info = probe(rendered / "silent.mp4")
    assert info["codec"] == "h264"
    assert (info["width"], info["height"]) == (192, 108)
    assert info["duration_seconds"] == pytest.approx(3, abs=0.5)
    assert info["has_audio"] is False


def test_probe_sees_the_audio_track(rendered):
    info = probe(rendered / "sound.mp4")
    assert (info["codec"], info["width"], info["height"], info["has_audio"]) == ("h264", 108, 192, True)
    assert info["duration_seconds"] == pytest.approx(4, abs=0.5)


def test_render_writes_a_jpeg_thumbnail_of_the_frame_size(rendered):
    with Image.open(rendered / "sound.jpg") as thumbnail:
        assert (thumbnail.format, thumbnail.size) == ("JPEG", (108, 192))


def _frame(video, at_seconds: float, out) -> Image.Image:
    subprocess.run(
        [
            render.ffmpeg_exe(),
            "-loglevel",
            "error",
            "-ss",
            str(at_seconds),
            "-i",
            str(video),
            "-frames:v",
            "1",
            str(out),
        ],
        check=True,
    )
    return Image.open(out).convert("L")


def _difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference of two greyscale frames, 0-255."""
    return ImageStat.Stat(ImageChops.difference(a, b)).mean[0]


def test_the_video_pans_from_the_thumbnails_frame(tmp_path):
    video, thumbnail = tmp_path / "v.mp4", tmp_path / "t.jpg"
    render_video(jpeg(640, 360, stripes=True), video, thumbnail, width=320, height=180, duration=2)
    first, last = _frame(video, 0, tmp_path / "first.png"), _frame(video, 1.9, tmp_path / "last.png")
    with Image.open(thumbnail) as shown:
        assert _difference(first, shown.convert("L")) < 4  # the thumbnail is the first frame
    assert _difference(first, last) > 10  # and the picture moves


def test_probe_of_a_still_image_reports_its_codec(tmp_path):
    path = tmp_path / "still.jpg"
    path.write_bytes(jpeg(64, 48))
    info = probe(path)
    assert info["codec"] == "mjpeg"
    assert (info["width"], info["height"], info["has_audio"]) == (64, 48, False)


def test_probe_missing_file(tmp_path):
    with pytest.raises(ProbeError, match="does not exist"):
        probe(tmp_path / "nope.mp4")


def test_probe_file_without_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video")
    with pytest.raises(ProbeError, match="no video stream"):
        probe(path)


def test_parse_ffmpeg_info_from_canned_output():
    text = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'x.mp4':
  Duration: 00:01:05.50, start: 0.000000, bitrate: 351 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 854x480, 278 kb/s, 24 fps
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, mono, fltp, 64 kb/s (default)
"""
    assert parse_ffmpeg_info(text) == {
        "codec": "h264",
        "width": 854,
        "height": 480,
        "duration_seconds": 65.5,
        "has_audio": True,
    }


def test_parse_ffmpeg_info_without_duration():
    text = "  Duration: N/A, bitrate: N/A\n  Stream #0:0: Video: h264 (High), yuv420p, 640x360\n"
    assert parse_ffmpeg_info(text)["duration_seconds"] is None


def test_parse_ffmpeg_info_video_without_size():
    with pytest.raises(ProbeError, match="no dimensions"):
        parse_ffmpeg_info("  Stream #0:0: Video: h264 (High), none\n")


@pytest.mark.parametrize(
    ("resolution", "aspect_ratio", "expected"),
    [
        ("480p", "16:9", (854, 480)),
        ("480p", "9:16", (480, 854)),
        ("480p", "1:1", (480, 480)),
        ("480p", "4:3", (640, 480)),
        ("480p", "3:4", (480, 640)),
        ("480p", "21:9", (1120, 480)),
        ("720p", "16:9", (1280, 720)),
        ("720p", "9:16", (720, 1280)),
        ("720p", "1:1", (720, 720)),
        ("720p", "4:3", (960, 720)),
        ("720p", "3:4", (720, 960)),
        ("720p", "21:9", (1680, 720)),
        ("1080p", "16:9", (1920, 1080)),
        ("1080p", "9:16", (1080, 1920)),
        ("1080p", "1:1", (1080, 1080)),
        ("1080p", "4:3", (1440, 1080)),
        ("1080p", "3:4", (1080, 1440)),
        ("1080p", "21:9", (2520, 1080)),
    ],
)
def test_output_dimensions_table(resolution, aspect_ratio, expected):
    assert output_dimensions(resolution, aspect_ratio) == expected


@pytest.mark.parametrize(("resolution", "aspect_ratio"), [("4k", "16:9"), ("480p", "wide"), ("480p", "0:1")])
def test_output_dimensions_rejects_unknown_values(resolution, aspect_ratio):
    with pytest.raises(ValueError):
        output_dimensions(resolution, aspect_ratio)


def test_render_rejects_bytes_that_are_not_an_image(tmp_path):
    with pytest.raises(UnidentifiedImageError):
        render_video(b"not an image", tmp_path / "v.mp4", tmp_path / "t.jpg", width=64, height=64, duration=1)


def test_render_refuses_odd_dimensions(tmp_path):
    # yuv420p H.264 cannot have odd dimensions: refused before ffmpeg would round them down.
    with pytest.raises(ValueError, match="even"):
        render_video(jpeg(320, 240), tmp_path / "v.mp4", tmp_path / "t.jpg", width=101, height=100, duration=1)


def test_render_reports_ffmpeg_failure(tmp_path, monkeypatch):
    failing = tmp_path / "ffmpeg"
    failing.write_text("#!/bin/sh\necho 'Conversion failed!' >&2\nexit 3\n")
    failing.chmod(0o755)
    monkeypatch.setattr(render, "ffmpeg_exe", lambda: str(failing))
    with pytest.raises(RenderError, match="ffmpeg exited with 3: Conversion failed!"):
        render_video(jpeg(320, 240), tmp_path / "v.mp4", tmp_path / "t.jpg", width=64, height=64, duration=1)
