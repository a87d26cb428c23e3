"""Class (a) of the integration contracts, one more edge: a role that sends messages to an encrypted queue itself
(not as a service: function code calling sqs:SendMessage, e.g. the drive functions' capacity-wait queues) can use the
queue's key. Registers with ``stacks.checks.service_contracts.rules.rule`` when imported.

- ``queue-sender-can-encrypt``: every role of the app that may sqs:SendMessage to a queue encrypted with a key of the
  app also may kms:GenerateDataKey and kms:Decrypt on that key (SQS_KMS_DOC, the producer's permissions: SQS
  generates the message's data key with the sender's credentials); without them every send fails with
  KMS.AccessDeniedException.
  Services that write queues are covered by the other class (a) rules (key policy statements), Lambda's own
  dead-letter delivery by ``function-dead-letter-role-can-encrypt``.
"""

from __future__ import annotations

from collections.abc import Iterator

from contracts.aws_docs import SQS_KMS_DOC
from stacks.checks.service_contracts.assembly import Assembly
from stacks.checks.service_contracts.rules import Context, Violation, _key_of, _unresolved_key, rule

NAME = "queue-sender-can-encrypt"
SENDER_KEY_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")


@rule(NAME)
def queue_senders(assembly: Assembly, _: Context) -> Iterator[Violation]:
    roles = list(assembly.resources("AWS::IAM::Role"))
    for queue in assembly.resources("AWS::SQS::Queue"):
        if not queue.properties.get("KmsMasterKeyId"):
            continue
        queue_arn = assembly.arn(queue)
        senders = [role for role in roles if assembly.role_allows(role, "sqs:SendMessage", queue_arn)]
        if not senders:
            continue
        key = _key_of(assembly, queue, "KmsMasterKeyId")
        if key is None:
            yield _unresolved_key(queue, "KmsMasterKeyId", NAME, SQS_KMS_DOC)
            continue
        for role in senders:
            missing = [a for a in SENDER_KEY_ACTIONS if not assembly.role_allows(role, a, assembly.arn(key))]
            if missing:
                yield Violation(NAME, role.path, f"may sqs:SendMessage to {queue.path}, encrypted with {key.path}, but "
                                f"lacks {', '.join(missing)} on that key: every send would fail", SQS_KMS_DOC)
