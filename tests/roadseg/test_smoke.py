"""roadseg/smoke.py: the delivery pipeline's post-deploy smoke test, against fakes (no AWS)."""

from __future__ import annotations

import json

from botocore.credentials import Credentials

from contracts import naming
from roadseg import smoke

NAMES = naming.stack_names("roadseg-dev")


def _outputs(serving: bool) -> dict[str, dict[str, str]]:
    outputs = {name: {} for name in NAMES.values()}
    for key in smoke.ALWAYS + (smoke.WHILE_SERVING if serving else ()):
        outputs[NAMES[naming.OUTPUT_STACKS[key]]][key] = "https://abc.lambda-url.us-east-1.on.aws/" \
            if key == naming.REALTIME_FRONT_URL else f"value-of-{key}"
    return outputs


def test_missing_outputs_names_stack_and_key():
    outputs = _outputs(serving=False)
    assert smoke.missing_outputs(outputs, "roadseg-dev") == []
    del outputs[NAMES[naming.DATA]][naming.DATASETS_BUCKET_NAME]
    assert smoke.missing_outputs(outputs, "roadseg-dev") == [f"{NAMES[naming.DATA]}.{naming.DATASETS_BUCKET_NAME}"]
    serving = _outputs(serving=True)
    del serving[NAMES[naming.INFERENCE]][naming.ASYNC_ENDPOINT_NAME]
    assert smoke.missing_outputs(serving, "roadseg-dev") == [f"{NAMES[naming.INFERENCE]}.AsyncEndpointName"]


def test_the_frame_is_signed_for_lambda():
    request = smoke.signed_post("https://abc.lambda-url.us-east-1.on.aws/", b"jpeg", "us-east-1",
                                Credentials("AKID", "SECRET", "TOKEN"))
    headers = {k.lower(): v for k, v in request.header_items()}
    assert "/us-east-1/lambda/aws4_request" in headers["authorization"]
    assert headers["x-amz-security-token"] == "TOKEN"


def test_check_frame_answer():
    good = json.dumps({"mask_png_base64": "iVBOR", "summary": {"mode": "realtime"}}).encode()
    assert smoke.check_frame_answer(200, good) is None
    assert "HTTP 503" in smoke.check_frame_answer(503, b"busy")
    assert "lacks" in smoke.check_frame_answer(200, b"{}")


def test_run_sends_a_frame_only_while_serving():
    sent = []

    def post(request):
        sent.append(request)
        return 200, json.dumps({"mask_png_base64": "x", "summary": {}}).encode()

    assert smoke.run("dev", "us-east-1", True, describe=_outputs(False).get, post=post) == []
    assert sent == []
    assert smoke.run("dev", "us-east-1", True, describe=_outputs(True).get, post=post) == []
    assert len(sent) == 1 and sent[0].get_method() == "POST" and sent[0].data[:2] == b"\xff\xd8"
    assert smoke.run("dev", "us-east-1", False, describe=lambda name: None, post=post) == [
        f"missing stack output {NAMES[naming.OUTPUT_STACKS[k]]}.{k}" for k in smoke.ALWAYS]
