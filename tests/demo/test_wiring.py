"""The rehearsal provisions the ingest path the way the synthesized inference stack defines it."""

from __future__ import annotations

import json

import pytest

from demo.resources import IngestWiring
from envconfig.config import available_environments


@pytest.mark.parametrize("env_name", available_environments())
def test_rehearsal_ingest_wiring_matches_the_template(synth, env_name):
    env = synth(env_name)
    template = json.loads((env.outdir / env.stacks.inference.template_file).read_text())["Resources"]
    wiring = IngestWiring.from_config(env.config)
    # The ingest queue: the queue the bucket notifications deliver to (the drives' capacity-wait queue has a
    # dead-letter queue too, but nothing notifies it).
    notified = {c["QueueArn"]["Fn::GetAtt"][0] for r in template.values()
                if r["Type"] == "Custom::S3BucketNotifications"
                for c in r["Properties"]["NotificationConfiguration"]["QueueConfigurations"]}
    queues = [r["Properties"] for logical_id, r in template.items()
              if r["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in r["Properties"] and logical_id in notified]
    assert len(queues) == 1, "one notified queue with a dead-letter queue: the ingest queue"
    ingest = queues[0]
    assert ingest["VisibilityTimeout"] == wiring.visibility_timeout_seconds
    assert ingest["RedrivePolicy"]["maxReceiveCount"] == wiring.max_receive_count
    assert ingest["MessageRetentionPeriod"] == wiring.retention_seconds
    notifications = [r["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
                     for r in template.values() if r["Type"] == "Custom::S3BucketNotifications"]
    assert len(notifications) == wiring.notifying_buckets
    for configurations in notifications:
        (configuration,) = configurations
        assert tuple(configuration["Events"]) == wiring.notification_events
        assert configuration["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix",
                                                                  "Value": wiring.notification_prefix}]
