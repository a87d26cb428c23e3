"""contracts.naming: every resource name from the prefix alone."""

from __future__ import annotations

import pytest

from contracts import naming


def test_stack_names() -> None:
    assert naming.stack_name_prefix("roadseg-dev") == "RoadsegDev"
    assert naming.stack_names("roadseg-dev") == {"Data": "RoadsegDevData", "Training": "RoadsegDevTraining",
                                                 "Inference": "RoadsegDevInference"}
    assert naming.data_stack_name("acme-prod") == "AcmeProdData"
    assert naming.training_stack_name("acme-prod") == "AcmeProdTraining"
    assert naming.inference_stack_name("acme-prod") == "AcmeProdInference"


def test_endpoint_pipeline_and_group_names() -> None:
    assert naming.endpoint_names("roadseg-dev") == ("roadseg-dev-realtime", "roadseg-dev-async")
    assert naming.pipeline_names("roadseg-dev") == ("roadseg-dev-training", "roadseg-dev-tuning")
    assert naming.model_package_group_name("roadseg-dev") == "roadseg-dev-segmentation"
    assert naming.export_name("roadseg-dev", naming.DATA_KEY_ARN_EXPORT) == "roadseg-dev:DataKeyArn"


def test_alarm_names() -> None:
    assert naming.realtime_rollback_alarm_names("p") == ("p-realtime-latency-p90", "p-realtime-5xx-errors")
    assert naming.async_rollback_alarm_names("p") == ("p-async-invocation-failures",)
    assert naming.rollback_alarm_names("p") == (*naming.realtime_rollback_alarm_names("p"),
                                                *naming.async_rollback_alarm_names("p"))
    assert naming.async_backlog_alarm_name("p") == "p-async-backlog-without-capacity"
    assert naming.async_oldest_request_alarm_name("p") == "p-async-oldest-request-age"


@pytest.mark.parametrize("prefix", ["roadseg-dev", "a-b-c", "x1"])
def test_resource_names_start_with_the_prefix(prefix: str) -> None:
    names = (*naming.endpoint_names(prefix), *naming.pipeline_names(prefix), naming.model_package_group_name(prefix),
             *naming.rollback_alarm_names(prefix), naming.export_name(prefix, "X"))
    assert all(name.startswith(f"{prefix}-") or name == f"{prefix}:X" for name in names)
    assert len(set(names)) == len(names)


def test_every_output_key_belongs_to_one_stack() -> None:
    keys = [value for name, value in vars(naming).items() if name.isupper() and isinstance(value, str)
            and value[:1].isupper() and name not in ("DATA", "TRAINING", "INFERENCE", "MODEL_PACKAGE_PARAMETER",
                                                     "SSM_PARAMETER_TYPE", "VARIANT_NAME")
            and not name.endswith("_EXPORT")]
    assert sorted(keys) == sorted(naming.OUTPUT_STACKS)
    assert set(naming.OUTPUT_STACKS.values()) == {naming.DATA, naming.TRAINING, naming.INFERENCE}
