"""Starting and stopping a local TensorBoard server (the tensorboard package's own program).

``trainkit tensorboard`` and the tests use the same :class:`TensorBoardServer`: a child process
``python -m tensorboard.main --logdir ... --host 127.0.0.1 --port N`` that only ever listens on
the loopback interface, found ready by asking its own HTTP API, and always stopped (terminate,
then kill) when the ``with`` block ends.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

HOST = "127.0.0.1"
# No proxy handler: an http_proxy variable in the environment must not send loopback requests
# through a proxy on another machine.
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on now: the one the OS picks for a bind to port 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether ``host:port`` can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class TensorBoardError(RuntimeError):
    """The TensorBoard process exited or did not answer in time."""


class TensorBoardServer:
    """A TensorBoard child process serving ``logdir`` on 127.0.0.1.

    Use it as a context manager, or call :meth:`start` and :meth:`stop` yourself::

        with TensorBoardServer("runs") as server:
            server.wait_ready(timeout=60)
            print(server.url)

    Args:
        logdir: The directory of runs to serve.
        port: The port; 0 picks a free one.
        reload_interval: Seconds between TensorBoard's scans of the logdir for new events.
        extra_args: More command-line flags for TensorBoard.
    """

    def __init__(self, logdir: str | Path, *, port: int = 0, reload_interval: float = 5.0, extra_args: tuple[str, ...] = ()) -> None:
        self.logdir = Path(logdir)
        self.port = port or free_port()
        self.reload_interval = reload_interval
        self.extra_args = tuple(extra_args)
        self.process: subprocess.Popen[bytes] | None = None
        # A run directory is served through a link in a directory of its own (see _serve_run).
        self._link_dir: Path | None = None
        self._output: collections.deque[str] = collections.deque(maxlen=40)
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The address to open in a browser."""
        return f"http://{HOST}:{self.port}/"

    def command(self) -> list[str]:
        """The command line of the child process."""
        return [
            sys.executable, "-m", "tensorboard.main",
            "--logdir", str(self._link_dir or self.logdir),
            "--host", HOST,
            "--port", str(self.port),
            "--reload_interval", str(self.reload_interval),
            # The Python loader: the Rust data server of --load_fast would be one more process
            # with its own listening socket, and it is only faster on large logdirs.
            "--load_fast", "false",
            *self.extra_args,
        ]

    def start(self) -> TensorBoardServer:
        """Starts the child process (returns at once; see :meth:`wait_ready`)."""
        self._serve_run()
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            # Same process group as trainkit: a Ctrl-C in the terminal, or a kill of the group,
            # reaches the server too; stop() covers a signal sent to trainkit alone.
        )
        self._reader = threading.Thread(target=self._read_output, name="tensorboard-output", daemon=True)
        self._reader.start()
        return self

    def _read_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            self._output.append(raw.decode("utf-8", "replace").rstrip())

    def output_tail(self, lines: int = 10) -> list[str]:
        """The last lines the server printed (for error messages)."""
        return list(self._output)[-lines:]

    def running(self) -> bool:
        """Whether the child process is alive."""
        return self.process is not None and self.process.poll() is None

    def get(self, path: str, *, timeout: float = 10.0) -> Any:
        """GETs ``path`` from the server's HTTP API and returns the decoded JSON."""
        with _LOCAL.open(self.url.rstrip("/") + path, timeout=timeout) as response:
            return json.loads(response.read().decode("utf-8"))

    def post(self, path: str, body: Any, *, timeout: float = 10.0) -> Any:
        """POSTs a JSON body to ``path`` and returns the decoded JSON answer."""
        request = urllib.request.Request(self.url.rstrip("/") + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST")
        with _LOCAL.open(request, timeout=timeout) as response:
            return json.loads(response.read().decode("utf-8"))

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Blocks until the server answers ``/data/runs``.

        Raises:
            TensorBoardError: The process exited, or did not answer within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                tail = " | ".join(line for line in self.output_tail(5) if line.strip()) or "no output"
                code = None if self.process is None else self.process.returncode
                raise TensorBoardError(f"TensorBoard exited with code {code}: {tail}")
            try:
                self.get("/data/runs", timeout=2.0)
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                pass
            if time.monotonic() > deadline:
                raise TensorBoardError(f"TensorBoard did not answer on {self.url} within {timeout:.0f}s")
            time.sleep(0.25)

    def _serve_run(self) -> None:
        """For one run's own directory (it holds ``train/``), serves a link to it named after it.

        Served as the logdir itself, the run is named ``.``, and the HParams dashboard looks its
        metrics up under ``./train``, which TensorBoard calls ``train``: every metric read empty
        (``--logdir_spec NAME:DIR`` names it ``NAME/.``, no better). Under a parent its splits are
        ``NAME/train``, as when a directory of runs is served. Without symlinks, the plain logdir.
        """
        if self._link_dir is not None or not (self.logdir / "train").is_dir():
            return
        holder = Path(tempfile.mkdtemp(prefix="trainkit-tensorboard-"))
        try:
            (holder / self.logdir.resolve().name).symlink_to(self.logdir.resolve(), target_is_directory=True)
        except OSError:  # no symlinks here (Windows without the privilege)
            shutil.rmtree(holder, ignore_errors=True)
            return
        self._link_dir = holder

    def stop(self, timeout: float = 10.0) -> None:
        """Stops the server: SIGTERM, then SIGKILL after ``timeout`` seconds. Safe to call twice."""
        try:
            self._stop_process(timeout)
        finally:
            if self._link_dir is not None:  # the link only: rmtree does not follow it into the run
                shutil.rmtree(self._link_dir, ignore_errors=True)
                self._link_dir = None

    def _stop_process(self, timeout: float) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        if process.stdout is not None:
            with contextlib.suppress(OSError):
                process.stdout.close()

    def __enter__(self) -> TensorBoardServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
