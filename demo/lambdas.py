"""The Lambda handlers exactly as packaged (``lambda/<handler>.py``), run in-process with the stack's environment.

Their Powertools log lines and EMF metric documents (JSON on stdout in Lambda) go to a log file instead of
the console; the per-function environment is set only for the duration of each invocation.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from contracts.lambda_env import METRICS_NAMESPACE, SERVICE_NAMES
from demo.awsenv import patched_environ

LAMBDA_DIR = Path(__file__).resolve().parent.parent / "lambda"
# SERVICE_NAMES: handler module -> POWERTOOLS_SERVICE_NAME the stack gives its function (read on import).
HANDLER_MODULES = tuple(SERVICE_NAMES)


@dataclass
class LambdaContext:
    """The attributes Powertools reads from the Lambda context object."""

    function_name: str
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "rehearsal"
    region: str = "us-east-1"
    account: str = "123456789012"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


class _CurrentStdout:
    """Writes to whatever sys.stdout is at the time (the handlers' log handlers keep their import-time stream)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _load_handler(name: str) -> Any:
    """Import ``lambda/<name>.py`` under its own name, as the Lambda runtime does (``roadseg_lambda`` and
    ``contracts``, which it imports, are installed packages)."""
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(LAMBDA_DIR / f"{name}.py"):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, LAMBDA_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Lambdas:
    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.modules = {}
        for name, service in SERVICE_NAMES.items():
            environ = {"POWERTOOLS_SERVICE_NAME": service, "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE}
            with patched_environ(environ):
                self.modules[name] = _load_handler(name)
        self.aws = importlib.import_module("roadseg_lambda.aws")
        self.settings = importlib.import_module("segcore.settings")
        self.metadata = importlib.import_module("segcore.metadata")
        self.imaging = importlib.import_module("segcore.imaging")
        self._streams: list[tuple[logging.StreamHandler, Any]] = []

    def __getattr__(self, name: str) -> Any:
        if name in HANDLER_MODULES:
            return self.__dict__["modules"][name]
        raise AttributeError(name)

    @contextlib.contextmanager
    def session(self, runtime_client: Any) -> Iterator[Lambdas]:
        """Fresh boto3 clients (made against the local server), the stand-in runtime client, logs to the file."""
        original_runtime = self.aws.runtime_client
        rollout = self.modules["rollout"]
        factories = (rollout.cloudformation_client, rollout.sagemaker_client, rollout.ssm_client)
        for module in self.modules.values():
            for handler in module.logger.handlers:
                if isinstance(handler, logging.StreamHandler):
                    self._streams.append((handler, handler.stream))
                    handler.stream = _CurrentStdout()  # not setStream(): it would flush (maybe close) the old one
        self._reset(factories)
        self.aws.runtime_client = lambda: runtime_client
        try:
            yield self
        finally:
            self.aws.runtime_client = original_runtime
            for client in (self.aws._cached_s3, getattr(self.aws, "_cached_dynamodb", self.aws._cached_s3), *factories):
                # roadseg_lambda.aws wraps its caches (one creation at a time) without cache_info: close those.
                if getattr(client, "cache_info", None) is None or client.cache_info().currsize:
                    with contextlib.suppress(Exception):
                        client().close()
            self._reset(factories)
            for handler, stream in self._streams:
                handler.stream = stream
            self._streams.clear()
            for name in ("ingest", "postprocess", "realtime"):
                self.modules[name].metrics.clear_metrics()

    def _reset(self, factories: tuple[Any, ...]) -> None:
        self.aws.reset_clients()
        self.settings.get_settings.cache_clear()
        for factory in factories:
            factory.cache_clear()

    @contextlib.contextmanager
    def environment(self, env: Mapping[str, str]) -> Iterator[TextIO]:
        """The function's environment variables while it runs; its stdout (logs, metrics) into the log file."""
        with patched_environ(dict(env)), self.log_path.open("a", encoding="utf-8") as log, \
                contextlib.redirect_stdout(log):
            self.settings.get_settings.cache_clear()
            try:
                yield log
            finally:
                self.settings.get_settings.cache_clear()
