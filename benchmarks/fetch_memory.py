"""Peak Python memory while fetch.py streams a 20 MB and a 200 MB result into S3.

The result is served by a loopback HTTP server (a thread in this process, generating the
bytes as it sends them); S3 is a moto server in a separate process, so its copy of the
object is not counted here. If streaming works, the two peaks are about the same: memory is
bounded by one multipart part, not by the video's size.
"""

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
import tracemalloc

MB = 1024 * 1024
SIZES_MB = (20, 200)
BUCKET = "bench-output"
_BLOCK = bytes(range(256)) * 4096  # 1 MiB of filler


class _ResultHandler(http.server.BaseHTTPRequestHandler):
    """GET /<n> answers with n bytes, generated in 1 MiB blocks (the server holds no copy)."""

    def do_GET(self):
        size = int(self.path.strip("/").split(".")[0])
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        left = size
        while left:
            block = _BLOCK[: min(left, len(_BLOCK))]
            self.wfile.write(block)
            left -= len(block)

    def log_message(self, *args):
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_moto() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, endpoint
        except OSError:
            time.sleep(0.1)
    process.terminate()
    raise RuntimeError("moto server did not start")


def _configure_aws(endpoint: str) -> None:
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        POWERTOOLS_SERVICE_NAME="image-to-video",
        POWERTOOLS_LOG_LEVEL="WARNING",
    )


def main() -> None:
    moto, endpoint = _start_moto()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ResultHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        _configure_aws(endpoint)
        # Imported after the environment is set: the layer creates its clients on first use.
        from i2v.aws import client, reset_clients
        from i2v.fetch import fetch_to_s3
        from i2v.settings import PublishSettings, StoreSettings

        reset_clients()
        client("s3").create_bucket(Bucket=BUCKET)
        settings = StoreSettings(
            provider="nohuman",
            output_bucket=BUCKET,
            publish=PublishSettings(jobs_table="", topic_arn=""),
            allow_loopback_http=True,
            max_result_bytes=1024 * MB,
        )

        def fetch(size: int, key: str):
            return fetch_to_s3(
                f"{base_url}/{size}.mp4", bucket=BUCKET, key=key, content_type="video/mp4", settings=settings
            )

        fetch(9 * MB, "warm-up.mp4")  # clients, connection pools and imports are not part of the figure

        print("Streaming a provider result through fetch.py into S3 (moto server)")
        print(f"{'size':>8} {'peak Python memory':>20} {'elapsed':>9} {'throughput':>12}")
        peaks = {}
        for size_mb in SIZES_MB:
            tracemalloc.start()
            started = time.perf_counter()
            fetched = fetch(size_mb * MB, f"bench-{size_mb}.mp4")
            elapsed = time.perf_counter() - started
            peaks[size_mb] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            if fetched.size != size_mb * MB:
                raise RuntimeError(f"stored {fetched.size} bytes, expected {size_mb * MB}")
            print(f"{size_mb:>5} MB {peaks[size_mb] / MB:>17.1f} MB {elapsed:>7.2f} s {size_mb / elapsed:>8.1f} MB/s")
        small, large = SIZES_MB
        print(
            f"size ratio {large / small:.0f}x -> peak memory ratio {peaks[large] / peaks[small]:.2f}x "
            "(about 1 means memory does not grow with the video's size)"
        )
    finally:
        server.shutdown()
        moto.terminate()
        moto.wait(timeout=10)


if __name__ == "__main__":
    main()
