"""roadseg.commands.s3_objects.parse_s3_uri: segcore's parser, a bad URI the user's error (exit 2) naming it."""

from __future__ import annotations

import pytest

from roadseg.commands.s3_objects import parse_s3_uri
from roadseg.session import UserError


def test_bucket_and_key() -> None:
    assert parse_s3_uri("s3://bucket/a/b c.onnx") == ("bucket", "a/b c.onnx")


@pytest.mark.parametrize("uri", ["http://b/k", "s3://bucket-only", "s3:///k", "s3://b/"])
def test_a_bad_uri_is_the_users_error_naming_it(uri: str) -> None:
    with pytest.raises(UserError, match=f"^'{uri}' is not an s3://bucket/key URI$"):
        parse_s3_uri(uri)
