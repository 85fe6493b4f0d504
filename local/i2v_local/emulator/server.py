"""The provider emulator: NanoBanana Video and NoHuman Studio on loopback, as documented.

An emulator, not either provider. It implements the two HTTP APIs as the providers publish
them (paths, fields, defaults, allowed values, statuses), downloads the source image from
the given URL over HTTP, and renders a real H.264 MP4 with ffmpeg.
Emulator facts live only in the `X-Emulator: i2v-local` header and the `/_emulator/*`
admin endpoints; provider responses carry the documented fields and nothing else.
"""

from __future__ import annotations

import io
import json
import logging
import math
import secrets
import shutil
import tempfile
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

import requests
from PIL import Image
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from .faults import FaultConfigError, Faults, InjectedError
from .render import RenderError, output_dimensions, render_video

logger = logging.getLogger("i2v_local.emulator")

EMULATOR_HEADER = ("X-Emulator", "i2v-local")
MAX_IMAGE_BYTES = 10 * 1024 * 1024
# NanoBanana auto-compresses images above 10 MB; we still refuse to download without bound.
NANOBANANA_DOWNLOAD_CAP = 50 * 1024 * 1024
IMAGE_FORMATS = {"JPEG", "PNG", "WEBP"}
RATE_WINDOW_SECONDS = 60.0
# How long stop() waits for renders (ffmpeg is terminated first, so this is rarely reached).
STOP_WAIT_SECONDS = 10.0

# --- NanoBanana Video rules (nanobanana-video-api.txt) --------------------------------
NB_MODELS = ("seedance2", "veo3", "sora2")
NB_RESOLUTIONS = ("480p", "720p", "1080p")
NB_MOTION = ("low", "medium", "high")
NB_ASPECTS = {
    "seedance2": ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9"),
    "veo3": ("16:9",),
    "sora2": ("16:9",),
}
NB_DEFAULT_PROMPT = "Generate a video from this image"
# The documented default (5) is not a valid duration for veo3 or sora2: use their own.
NB_DEFAULT_DURATION = {"seedance2": 5, "veo3": 8, "sora2": 10}
# credits_used = duration x model factor x resolution factor (doc example: seedance2 720p 6 s = 6).
NB_MODEL_CREDITS = {"seedance2": 1, "veo3": 2, "sora2": 3}
NB_RESOLUTION_CREDITS = {"480p": 1, "720p": 1, "1080p": 2}

# --- NoHuman Studio rules (nohuman-studio-api.txt) ------------------------------------
NH_MODEL = "nohuman-x33"
NH_MODES = ("fast", "hq")
NH_ASPECTS = ("16:9", "9:16", "1:1")
NH_DURATIONS = (5, 10)
# NoHuman has no resolution option: fast renders 720p, hq 1080p.
NH_RESOLUTION = {"fast": "720p", "hq": "1080p"}
NH_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "authentication_error",
    404: "not_found",
    429: "rate_limit",
}


class _BadRequest(Exception):
    """A request the provider would refuse with 400."""


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json(body: dict, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, mimetype="application/json")


def _retry_headers(retry_after: int | None) -> dict | None:
    return {"Retry-After": str(retry_after)} if retry_after is not None else None


def nanobanana_error(status: int, message: str, retry_after: int | None = None) -> Response:
    return _json({"success": False, "error": message}, status, _retry_headers(retry_after))


def nohuman_error(status: int, message: str, retry_after: int | None = None) -> Response:
    kind = NH_ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return _json({"error": {"type": kind, "message": message}}, status, _retry_headers(retry_after))


def files_error(status: int, code: str, message: str, retry_after: int | None = None) -> Response:
    # Shaped like an S3/CloudFront signed-URL error, which is what result URLs are in practice.
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return Response(body, status=status, headers=_retry_headers(retry_after), mimetype="application/xml")


def _request_json(request: Request) -> dict:
    try:
        body = json.loads(request.get_data(as_text=True) or "null")
    except ValueError:
        raise _BadRequest("request body must be valid JSON") from None
    if not isinstance(body, dict):
        raise _BadRequest("request body must be a JSON object")
    return body


def _check_image_url(body: dict) -> str:
    url = body.get("image_url")
    if url is None or url == "":
        raise _BadRequest("image_url is required")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise _BadRequest("image_url must be an http(s) URL")
    return url


def _choice(body: dict, name: str, allowed, default):
    value = body.get(name, default)
    if value not in allowed or not isinstance(value, str):
        raise _BadRequest(f"{name} must be one of {', '.join(allowed)} (got {value!r})")
    return value


def validate_nanobanana(body: dict) -> dict:
    """The request with documented defaults filled in; _BadRequest names the first bad field."""
    image_url = _check_image_url(body)
    prompt = body.get("prompt", NB_DEFAULT_PROMPT)
    if not isinstance(prompt, str):
        raise _BadRequest("prompt must be a string")
    model = _choice(body, "video_model", NB_MODELS, "seedance2")
    resolution = _choice(body, "resolution", NB_RESOLUTIONS, "480p")
    duration = body.get("duration", NB_DEFAULT_DURATION[model])
    if not _is_int(duration):
        raise _BadRequest(f"duration must be an integer (got {duration!r})")
    if model == "veo3" and duration != 8:
        raise _BadRequest(f"duration must be 8 for veo3 (got {duration})")
    if model == "sora2" and duration not in (10, 15):
        raise _BadRequest(f"duration must be 10 or 15 for sora2 (got {duration})")
    if model == "seedance2" and not 3 <= duration <= 12:
        raise _BadRequest(f"duration must be between 3 and 12 seconds (got {duration})")
    aspect_ratio = _choice(body, "aspect_ratio", NB_ASPECTS[model], "16:9")
    motion = _choice(body, "motion_intensity", NB_MOTION, "medium")
    return {
        "image_url": image_url,
        "prompt": prompt,
        "video_model": model,
        "resolution": resolution,
        "duration": duration,
        "aspect_ratio": aspect_ratio,
        "motion_intensity": motion,
    }


def nanobanana_credits(options: dict) -> int:
    """Our credits rule: duration x model factor x resolution factor."""
    return options["duration"] * NB_MODEL_CREDITS[options["video_model"]] * NB_RESOLUTION_CREDITS[options["resolution"]]


def validate_nohuman(body: dict) -> dict:
    """The request with documented defaults filled in; _BadRequest names the first bad field."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _BadRequest("prompt is required")
    image_url = _check_image_url(body)
    mode = _choice(body, "mode", NH_MODES, "fast")
    negative_prompt = body.get("negative_prompt")
    if negative_prompt is not None and not isinstance(negative_prompt, str):
        raise _BadRequest("negative_prompt must be a string")
    aspect_ratio = _choice(body, "aspect_ratio", NH_ASPECTS, "16:9")
    duration = body.get("duration", 5)
    if not _is_number(duration) or duration not in NH_DURATIONS:
        raise _BadRequest(f"duration must be one of 5, 10 (got {duration!r})")
    cfg_scale = body.get("cfg_scale", 0.5)
    if not _is_number(cfg_scale) or not 0 <= cfg_scale <= 1:
        raise _BadRequest(f"cfg_scale must be a number between 0 and 1 (got {cfg_scale!r})")
    sound = body.get("sound", True)
    if not isinstance(sound, bool):
        raise _BadRequest(f"sound must be a boolean (got {sound!r})")
    return {
        "prompt": prompt,
        "image_url": image_url,
        "mode": mode,
        "negative_prompt": negative_prompt,
        "aspect_ratio": aspect_ratio,
        "duration": int(duration),
        "cfg_scale": cfg_scale,
        "sound": sound,
    }


def fetch_image(url: str, *, max_bytes: int, limit_is_error: bool) -> bytes:
    """Download and check the source image; _BadRequest says why it is unusable.

    The URL is usually presigned: it never appears in a message or a log line.
    """
    try:
        with requests.get(url, timeout=(5, 30), stream=True) as response:
            if response.status_code != 200:
                raise _BadRequest(f"could not fetch image_url: {response.status_code}")
            data = bytearray()
            for chunk in response.iter_content(64 * 1024):
                data.extend(chunk)
                if len(data) > max_bytes:
                    raise _BadRequest("image exceeds 10 MB" if limit_is_error else "image is too large")
    except requests.RequestException as exc:
        raise _BadRequest(f"could not fetch image_url: {type(exc).__name__}") from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format = image.format
            image.load()  # a truncated file opens fine and only fails here
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise _BadRequest("image_url is not a valid JPEG, PNG or WebP image") from None
    if image_format not in IMAGE_FORMATS:
        raise _BadRequest(f"unsupported image format {image_format}: use JPEG, PNG or WebP")
    if limit_is_error and len(data) > MAX_IMAGE_BYTES:
        raise _BadRequest("image exceeds 10 MB")
    return bytes(data)


class _QuietHandler(WSGIRequestHandler):
    """Request lines go to our logger at DEBUG instead of werkzeug's stderr handler."""

    def log_request(self, code="-", size="-"):
        logger.debug("%s %s %s", self.command, self.path.split("?", 1)[0], code)


class ProviderEmulator:
    """Both providers' HTTP APIs on one loopback port, usable as a library or a process.

    >>> with ProviderEmulator(render_seconds=0) as emulator:
    ...     emulator.url  # "http://127.0.0.1:<port>"
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = "local-emulator-key",
        render_seconds: float = 2.0,
        public_base_url: str | None = None,
        rate_limit: int = 30,
        max_concurrent_renders: int = 2,
    ):
        self.host = host
        self.port = port
        self.api_key = api_key
        self.faults = Faults(render_seconds=render_seconds, rate_limit=rate_limit)
        self._public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self._lock = threading.Lock()
        self._render_slots = threading.BoundedSemaphore(max_concurrent_renders)
        self._stopping = threading.Event()
        self._renders = threading.Condition(self._lock)  # notified when a render ends
        self._active_renders = 0
        self._render_threads: list[threading.Thread] = []  # NoHuman generations in the background
        self._requests: list[dict] = []  # the create-request log behind /_emulator/jobs
        self._jobs: dict[str, dict] = {}  # NoHuman generations by id
        self._files: dict[str, dict] = {}  # result files by name
        self._rate_window: deque[float] = deque()
        self._server = None
        self._thread = None
        self._files_dir: Path | None = None
        self._routes = Map(
            [
                Rule("/api/v1/image-to-video.php", methods=["POST"], endpoint="nanobanana_create"),
                Rule("/v1/videos/generate", methods=["POST"], endpoint="nohuman_create"),
                Rule("/v1/videos/generations/<job_id>", methods=["GET"], endpoint="nohuman_status"),
                Rule("/files/<name>", methods=["GET"], endpoint="serve_file"),
                Rule("/_emulator/health", methods=["GET"], endpoint="admin_health"),
                Rule("/_emulator/jobs", methods=["GET", "DELETE"], endpoint="admin_jobs"),
                Rule("/_emulator/faults", methods=["GET", "POST", "DELETE"], endpoint="admin_faults"),
            ],
            strict_slashes=False,
        )

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> ProviderEmulator:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._files_dir = Path(tempfile.mkdtemp(prefix="i2v-emulator-"))
        self._server = make_server(self.host, self.port, self, threaded=True, request_handler=_QuietHandler)
        self.port = self._server.server_port
        # A short poll interval keeps stop() quick (shutdown waits for the next poll).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="provider-emulator", daemon=True
        )
        self._thread.start()
        logger.info(
            "provider EMULATOR (not the real NanoBanana Video / NoHuman Studio services) listening on %s",
            self.url,
        )
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        with self._lock:
            # Under the lock: a render either started before this (and is counted) or never starts.
            self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = self._thread = None
        # Renders see _stopping and terminate their ffmpeg; wait for them before deleting its files.
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        with self._renders:
            while self._active_renders and (remaining := deadline - time.monotonic()) > 0:
                self._renders.wait(remaining)
            busy = self._active_renders
            threads, self._render_threads = self._render_threads, []
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if busy or any(thread.is_alive() for thread in threads):
            logger.warning("provider emulator stopped with work still running")
        if self._files_dir:
            shutil.rmtree(self._files_dir, ignore_errors=True)
        logger.info("provider emulator stopped")

    def __enter__(self) -> ProviderEmulator:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def public_base_url(self) -> str:
        return self._public_base_url or self.url

    # --- library conveniences (the same data as the admin endpoints) ---------------------

    def requests_received(self) -> list[dict]:
        with self._lock:
            return json.loads(json.dumps(self._requests))

    def set_faults(self, patch: dict) -> dict:
        return self.faults.update(patch)

    def reset(self) -> None:
        """Clear the create-request log, the rate-limit window and every fault."""
        with self._lock:
            self._requests.clear()
            self._rate_window.clear()
        self.faults.reset()

    # --- WSGI ----------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        request = Request(environ)
        adapter = self._routes.bind_to_environ(environ)
        try:
            endpoint, args = adapter.match()
            response = getattr(self, f"_{endpoint}")(request, **args)
        except (NotFound, MethodNotAllowed) as exc:
            response = self._routing_error(request.path, exc)
        except HTTPException as exc:
            response = exc.get_response(environ)
        response.headers[EMULATOR_HEADER[0]] = EMULATOR_HEADER[1]
        return response(environ, start_response)

    @staticmethod
    def _routing_error(path: str, exc: HTTPException) -> Response:
        message = "not found" if exc.code == 404 else "method not allowed"
        if path.startswith("/api/"):
            response = nanobanana_error(exc.code, message)
        elif path.startswith("/v1/"):
            response = nohuman_error(exc.code, message)
        else:
            response = _json({"error": message}, exc.code)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    def _authorised(self, request: Request) -> str | None:
        """None when the bearer key is right, else the 401 message."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "missing bearer token in the Authorization header"
        if not secrets.compare_digest(token.strip(), self.api_key):
            return "invalid API key"
        return None

    def _delayed(self, endpoint: str, response: Response) -> Response:
        # The "timeout" fault: the work is done, the answer comes late (client read timeouts).
        delay = self.faults.delay_for(endpoint)
        if delay:
            self._stopping.wait(delay)
        return response

    def _log_request(self, provider: str, request: Request) -> dict:
        try:
            options = json.loads(request.get_data(as_text=True) or "null")
        except ValueError:
            options = request.get_data(as_text=True)
        entry = {
            "seq": 0,
            "provider": provider,
            "endpoint": f"{request.method} {request.path}",
            "options": options,
            "status": "received",
            "http_status": None,
            "job_id": None,
            "error": None,
            "created_at": _now_iso(),
        }
        with self._lock:
            entry["seq"] = len(self._requests) + 1
            self._requests.append(entry)
        return entry

    def _update_entry(self, entry: dict, **changes) -> None:
        with self._lock:
            entry.update(changes)

    def _reject(self, entry: dict, response: Response, message: str) -> Response:
        self._update_entry(entry, status="rejected", http_status=response.status_code, error=message)
        return response

    # --- NanoBanana Video ----------------------------------------------------------------

    def _take_rate_slot(self) -> tuple[dict | None, int | None]:
        """(rate_limit counters, None) or (None, seconds until a slot frees) when over the limit."""
        limit = self.faults.value("nanobanana_rate_limit")
        now = time.monotonic()
        with self._lock:
            while self._rate_window and now - self._rate_window[0] >= RATE_WINDOW_SECONDS:
                self._rate_window.popleft()
            if len(self._rate_window) >= limit:
                wait = self._rate_window[-limit] + RATE_WINDOW_SECONDS - now
                return None, max(1, math.ceil(wait))
            self._rate_window.append(now)
            count = len(self._rate_window)
        return {"count": count, "limit": limit, "remaining": max(0, limit - count)}, None

    def _nanobanana_create(self, request: Request) -> Response:
        started = time.monotonic()
        # Read before the entry shows in /_emulator/jobs: a client that changes the setting
        # once it sees its request must not change this job.
        render_seconds = self.faults.value("render_seconds")
        entry = self._log_request("nanobanana", request)
        injected = self.faults.error_for("nanobanana.create")
        if injected:
            return self._delayed("nanobanana.create", self._injected(entry, injected, nanobanana_error))
        denied = self._authorised(request)
        if denied:
            return self._reject(entry, nanobanana_error(401, denied), denied)
        rate_limit, retry_after = self._take_rate_slot()
        if rate_limit is None:
            message = "rate limit exceeded: try again later"
            return self._reject(entry, nanobanana_error(429, message, retry_after), message)
        try:
            options = validate_nanobanana(_request_json(request))
            image = fetch_image(options["image_url"], max_bytes=NANOBANANA_DOWNLOAD_CAP, limit_is_error=False)
        except _BadRequest as exc:
            return self._delayed("nanobanana.create", self._reject(entry, nanobanana_error(400, str(exc)), str(exc)))

        video_id = f"vid_{secrets.token_hex(6)}"
        self._update_entry(entry, status="processing", job_id=video_id)
        failure = self.faults.job_failure()
        width, height = output_dimensions(options["resolution"], options["aspect_ratio"])
        if failure is None:
            failure = self._render(video_id, image, width, height, options["duration"], sound=False, thumbnail=True)
        self._stopping.wait(max(0.0, started + render_seconds - time.monotonic()))
        if failure:
            # The generation itself failed: a definitive answer (nothing to retry, no credits used).
            self._update_entry(entry, status="failed", http_status=200, error=failure, finished_at=_now_iso())
            return self._delayed("nanobanana.create", nanobanana_error(200, failure))

        body = {
            "success": True,
            "video_id": video_id,
            "video_url": f"{self.public_base_url}/files/{video_id}.mp4",
            "thumbnail_url": f"{self.public_base_url}/files/{video_id}.jpg",
            "credits_used": nanobanana_credits(options),
            "rate_limit": rate_limit,
        }
        self._update_entry(entry, status="completed", http_status=200, finished_at=_now_iso())
        return self._delayed("nanobanana.create", _json(body))

    def _injected(self, entry: dict, injected: InjectedError, shape) -> Response:
        retry_after = injected.retry_after
        if injected.status == 429 and retry_after is None:
            retry_after = 1  # a rate limit without Retry-After would be unusual
        return self._reject(entry, shape(injected.status, injected.message, retry_after), injected.message)

    def _render(
        self, job_id: str, image: bytes, width: int, height: int, duration: int, sound: bool, thumbnail: bool
    ) -> str | None:
        """Render into the files area; the failure message, or None on success.

        Only NanoBanana documents a thumbnail, so only its thumbnail is served.
        """
        video = self._files_dir / f"{job_id}.mp4"
        still = self._files_dir / f"{job_id}.jpg"
        with self._render_slots:
            with self._lock:
                if self._stopping.is_set():
                    return "the emulator is stopping"
                self._active_renders += 1
            try:
                render_video(
                    image,
                    video,
                    still,
                    width=width,
                    height=height,
                    duration=duration,
                    sound=sound,
                    cancel=self._stopping,
                )
            except RenderError as exc:
                logger.error("render of %s failed: %s", job_id, exc)
                return "video generation failed"
            finally:
                with self._renders:
                    self._active_renders -= 1
                    self._renders.notify_all()
        now = time.time()
        with self._lock:
            self._files[video.name] = {"path": video, "content_type": "video/mp4", "created": now}
            if thumbnail:
                self._files[still.name] = {"path": still, "content_type": "image/jpeg", "created": now}
        return None

    # --- NoHuman Studio ------------------------------------------------------------------

    def _nohuman_create(self, request: Request) -> Response:
        render_seconds = self.faults.value("render_seconds")  # before logging: see _nanobanana_create
        entry = self._log_request("nohuman", request)
        injected = self.faults.error_for("nohuman.create")
        if injected:
            return self._delayed("nohuman.create", self._injected(entry, injected, nohuman_error))
        denied = self._authorised(request)
        if denied:
            return self._reject(entry, nohuman_error(401, denied), denied)
        try:
            options = validate_nohuman(_request_json(request))
        except _BadRequest as exc:
            return self._delayed("nohuman.create", self._reject(entry, nohuman_error(400, str(exc)), str(exc)))

        job_id = f"gen_img2v_{secrets.token_hex(6)}"
        job = {
            "id": job_id,
            "status": "created",
            "options": options,
            "error": None,
            "started": time.monotonic(),
            "render_seconds": render_seconds,
            "failure": self.faults.job_failure(),  # decided now, so fail_next follows request order
            "entry": entry,
        }
        thread = threading.Thread(target=self._run_nohuman_job, args=(job,), name=f"render-{job_id}", daemon=True)
        with self._lock:
            self._jobs[job_id] = job
            # Tracked so stop() can join it; finished ones are dropped as new ones arrive.
            self._render_threads = [t for t in self._render_threads if t.is_alive()] + [thread]
        self._update_entry(entry, status="created", http_status=200, job_id=job_id)
        thread.start()
        body = {"id": job_id, "model": NH_MODEL, "status": "created", "poll_url": f"/v1/videos/generations/{job_id}"}
        return self._delayed("nohuman.create", _json(body))

    def _set_job_status(self, job: dict, status: str, error: str | None = None) -> None:
        with self._lock:
            job["status"] = status
            job["error"] = error
            job["entry"].update(status=status, error=error)
            if status in ("completed", "failed"):
                job["entry"]["finished_at"] = _now_iso()  # when the provider was done (benchmarks' completion lag)

    def _run_nohuman_job(self, job: dict) -> None:
        try:
            self._generate(job)
        except Exception:
            # A bug here must not leave the generation "processing" forever: report it as failed.
            logger.exception("generation %s crashed", job["id"])
            self._set_job_status(job, "failed", "internal error")

    def _generate(self, job: dict) -> None:
        options = job["options"]
        # "created" = received, waiting for processing: a short queue time, then a render slot.
        if self._stopping.wait(min(1.0, job["render_seconds"] / 4)):
            return
        self._set_job_status(job, "processing")
        failure = job["failure"]
        if failure is None:
            try:
                image = fetch_image(options["image_url"], max_bytes=MAX_IMAGE_BYTES, limit_is_error=True)
            except _BadRequest as exc:
                failure = str(exc)
        if self._stopping.is_set():
            return
        if failure is None:
            width, height = output_dimensions(NH_RESOLUTION[options["mode"]], options["aspect_ratio"])
            failure = self._render(
                job["id"], image, width, height, options["duration"], sound=options["sound"], thumbnail=False
            )
        if self._stopping.wait(max(0.0, job["started"] + job["render_seconds"] - time.monotonic())):
            return
        self._set_job_status(job, "failed" if failure else "completed", failure)

    def _nohuman_status(self, request: Request, job_id: str) -> Response:
        injected = self.faults.error_for("nohuman.status")
        if injected:
            retry_after = injected.retry_after or (1 if injected.status == 429 else None)
            return self._delayed("nohuman.status", nohuman_error(injected.status, injected.message, retry_after))
        denied = self._authorised(request)
        if denied:
            return nohuman_error(401, denied)
        with self._lock:
            job = self._jobs.get(job_id)
            body = {"id": job_id, "model": NH_MODEL, "status": job["status"]} if job else None
            if body and job["status"] == "completed":
                body["result"] = {"url": f"{self.public_base_url}/files/{job_id}.mp4"}  # no thumbnail documented
            elif body and job["status"] == "failed":
                body["error"] = job["error"]
        if body is None:
            return self._delayed("nohuman.status", nohuman_error(404, f"generation {job_id} not found"))
        return self._delayed("nohuman.status", _json(body))

    # --- result files --------------------------------------------------------------------

    def _serve_file(self, request: Request, name: str) -> Response:
        injected = self.faults.error_for("files")
        if injected:
            code = "SlowDown" if injected.status in (429, 503) else "InternalError"
            retry_after = injected.retry_after or (1 if injected.status == 429 else None)
            return self._delayed("files", files_error(injected.status, code, injected.message, retry_after))
        with self._lock:
            stored = self._files.get(name)
        if stored is None:
            return self._delayed("files", files_error(404, "NoSuchKey", "The specified key does not exist."))
        if time.time() > stored["created"] + self.faults.value("result_url_ttl_seconds"):
            return self._delayed("files", files_error(403, "AccessDenied", "Request has expired"))
        size = stored["path"].stat().st_size
        rate = self.faults.value("download_bytes_per_second")
        body = self._stream(stored["path"], rate)
        response = Response(body, mimetype=stored["content_type"], direct_passthrough=True)
        response.headers["Content-Length"] = str(size)
        return self._delayed("files", response)

    def _stream(self, path: Path, bytes_per_second: int | None):
        """The file in chunks; with a rate, each chunk waits its share of a second."""
        chunk_size = max(1, bytes_per_second // 10) if bytes_per_second else 256 * 1024
        with path.open("rb") as handle:
            while chunk := handle.read(chunk_size):
                yield chunk
                if bytes_per_second and self._stopping.wait(len(chunk) / bytes_per_second):
                    return

    # --- admin ---------------------------------------------------------------------------

    def _admin_health(self, request: Request) -> Response:
        return _json(
            {
                "status": "ok",
                "emulator": "i2v-local provider emulator (not a real provider)",
                "providers": {
                    "nanobanana": "POST /api/v1/image-to-video.php",
                    "nohuman": "POST /v1/videos/generate, GET /v1/videos/generations/{id}",
                },
                "url": self.url,
                "public_base_url": self.public_base_url,
            }
        )

    def _admin_jobs(self, request: Request) -> Response:
        if request.method == "DELETE":
            with self._lock:
                cleared = len(self._requests)
                self._requests.clear()
                self._rate_window.clear()
            return _json({"cleared": cleared})
        return _json({"jobs": self.requests_received()})

    def _admin_faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            return _json(self.faults.reset())
        if request.method == "POST":
            try:
                patch = json.loads(request.get_data(as_text=True) or "{}")
                return _json(self.faults.update(patch))
            except (ValueError, FaultConfigError) as exc:
                return _json({"error": str(exc)}, 400)
        return _json(self.faults.snapshot())
