"""moto in server mode on 127.0.0.1, and the process environment that points boto3 (and nothing else) at it.

The server is a thread of this process (``moto.server.ThreadedMotoServer`` on port 0: the OS picks a free
port), so stopping it in ``finally`` leaves nothing behind. The environment changes (endpoint URL, fake
credentials, no profile, no config files) are undone when the context ends; they are never exported to
another process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import urllib.request
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import boto3
from botocore.config import Config

# Credentials and settings that would let boto3 reach a real account, or read the developer's files.
_CLEARED = (
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_CA_BUNDLE",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT",
)
_CLEARED_PREFIXES = ("AWS_ENDPOINT_URL_",)  # per-service endpoint overrides would bypass the local server


def fake_aws_environment(endpoint_url: str, region: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "rehearsal",
        "AWS_SECRET_ACCESS_KEY": "rehearsal",
        "AWS_SESSION_TOKEN": "rehearsal",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "SAGEMAKER_VALIDATE_ROLE": "false",
    }


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str], remove: Iterable[str] = ()) -> Iterator[None]:
    """Set ``values`` and unset ``remove`` in os.environ; restore every touched variable afterwards."""
    touched = set(values) | set(remove)
    saved = {name: os.environ.get(name) for name in touched}
    try:
        for name in remove:
            os.environ.pop(name, None)
        os.environ.update(values)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class LocalMoto:
    """A moto server thread on 127.0.0.1 and an ephemeral port; ``stop()`` joins the thread and closes the port."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint_url: str | None = None
        self.port: int | None = None
        self.thread: Any = None

    def start(self) -> None:
        self._server.start()
        host, self.port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{self.port}"
        self.thread = getattr(self._server, "_thread", None)
        self.reset()

    def reset(self) -> None:
        """Forget every emulated resource (moto's state is per process, not per server)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - 127.0.0.1 only
            response.read()

    def stop(self) -> None:
        try:
            self._server.stop()
        finally:
            inner = getattr(self._server, "_server", None)
            if inner is not None:
                inner.server_close()  # stop() shuts the loop down but leaves the listening socket open

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


class AwsClients:
    """boto3 clients against the local server, closed when the rehearsal ends."""

    def __init__(self, region: str) -> None:
        self.region = region
        self._clients: dict[str, Any] = {}
        self._config = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=5, read_timeout=30)

    def __call__(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = boto3.session.Session(region_name=self.region).client(
                service, config=self._config)
        return self._clients[service]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


@contextlib.contextmanager
def local_aws(region: str) -> Iterator[tuple[LocalMoto, AwsClients]]:
    """Start moto on 127.0.0.1, point this process's boto3 at it; stop and restore everything on exit."""
    server = LocalMoto()
    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.ERROR)  # one access-log line per request otherwise
    clients = AwsClients(region)
    try:
        server.start()
        remove = [name for name in os.environ if name.startswith(_CLEARED_PREFIXES)] + list(_CLEARED)
        with patched_environ(fake_aws_environment(server.endpoint_url, region), remove=remove), \
                warnings.catch_warnings():
            # moto keeps the stand-in inference stack's one placeholder resource as a null model, and says so.
            warnings.filterwarnings("ignore", message=r"Tried to parse AWS::CloudFormation::WaitConditionHandle")
            yield server, clients
    finally:
        clients.close()
        if server.endpoint_url is not None:
            with contextlib.suppress(OSError):
                server.reset()
            server.stop()
        werkzeug.setLevel(level)
