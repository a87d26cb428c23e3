"""The ``queue-sender-can-encrypt`` contract (stacks/checks/service_contracts/queue_senders.py): every environment
keeps it (the drive functions send to the encrypted capacity-wait queues), and it fails when a sender loses the key."""

from __future__ import annotations

import copy
import json

import pytest

from envconfig.config import available_environments
from stacks.checks.service_contracts import Assembly, Context
from stacks.checks.service_contracts.queue_senders import NAME, queue_senders


def _templates(env) -> dict[str, dict]:
    return {stack.stack_name: json.loads((env.outdir / stack.template_file).read_text()) for stack in env.stacks.all}


def _violations(templates: dict[str, dict]) -> list:
    return list(queue_senders(Assembly(templates), Context()))


@pytest.mark.parametrize("env_name", available_environments())
def test_every_environment_keeps_the_queue_sender_contract(synth, env_name) -> None:
    assert _violations(_templates(synth(env_name))) == []


def test_a_capacity_wait_sender_without_the_queue_key_fails(synth) -> None:
    templates = _templates(synth("dev"))
    broken = copy.deepcopy(templates)
    dropped = 0
    for template in broken.values():
        for logical_id, body in template["Resources"].items():
            if body["Type"] == "AWS::IAM::Policy" and logical_id.startswith("DriveProcessingCompletionServiceRole"):
                statements = body["Properties"]["PolicyDocument"]["Statement"]
                kept = [s for s in statements if not any(str(a).startswith("kms:GenerateDataKey")
                                                         for a in ([s["Action"]] if isinstance(s["Action"], str)
                                                                   else s["Action"]))]
                dropped += len(statements) - len(kept)
                body["Properties"]["PolicyDocument"]["Statement"] = kept
    assert dropped, "the breaker changed nothing"
    violations = _violations(broken)
    assert any(v.rule == NAME and "CapacityWait" in v.message and "kms:GenerateDataKey" in v.message
               and v.doc.startswith("https://docs.aws.amazon.com/") for v in violations), violations
