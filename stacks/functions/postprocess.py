"""Postprocess: the async endpoint's success and error notifications (SNS) -> this function, which turns masks
into result documents (and overlays) and records failures."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from constructs import Construct

from contracts.lambda_env import PreprocessorEnvironment
from contracts.layout import INFERENCE
from envconfig.config import EnvironmentConfig
from stacks.bucket_set import SharedBuckets
from stacks.functions.preprocessor import preprocessor_function_props
from stacks.functions.roadseg_function import RoadsegFunction, encrypted_queue
from stacks.operations_key import OperationsKey


@dataclass(frozen=True)
class PostprocessFunctionProps:
    config: EnvironmentConfig
    environment: PreprocessorEnvironment  # shared by the preprocessors; the function sets its service name
    buckets: SharedBuckets
    key: OperationsKey  # the subscriptions' dead-letter queue, the log group
    success_topic: sns.ITopic
    error_topic: sns.ITopic


class PostprocessFunction(RoadsegFunction):
    """Also creates, next to itself, ``<id>DeadLetters`` for notifications SNS could not deliver."""

    def __init__(self, scope: Construct, construct_id: str, props: PostprocessFunctionProps) -> None:
        inference = props.buckets.inference
        super().__init__(scope, construct_id, preprocessor_function_props(
            props.config, props.environment, props.key, module="postprocess",
            function=props.config.preprocessing.postprocess,
            description="Turns async masks into result JSON (and overlays); records failures"))

        self.dead_letters = encrypted_queue(scope, f"{construct_id}DeadLetters", props.key)
        props.key.admit_sns_dead_letters()  # SNS itself moves undeliverable notifications into the encrypted DLQ
        for topic in (props.success_topic, props.error_topic):
            topic.add_subscription(subs.LambdaSubscription(self, dead_letter_queue=self.dead_letters))

        self.grant_bucket_read(inference, INFERENCE.async_output, reason="Masks written by the async endpoint.")
        self.grant_bucket_read(inference, INFERENCE.async_failures,
                               reason="Failure payloads written by the async endpoint.")
        self.grant_bucket_read(inference, INFERENCE.async_input, reason="Frame metadata and pixels for overlays.")
        self.grant_bucket_put(inference, INFERENCE.results, reason="Result documents and overlays.")
        self.grant_bucket_put(inference, INFERENCE.failures,
                              reason="Failure records of frames the endpoint could not segment.")

        self.errors = self.errors_alarm()
        self.dead_letters_depth = self.dlq_depth_alarm(self.dead_letters)
        self.alarms = [self.errors, self.dead_letters_depth]
