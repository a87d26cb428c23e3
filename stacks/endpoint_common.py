"""What the real-time and async endpoints share: variant naming, storage-key rule, blue/green rollout, and
``ServingEndpoint``, the endpoint as other constructs use it (``grant_invoke``, metrics)."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from contracts.instances import has_local_instance_storage
from contracts.naming import VARIANT_NAME
from stacks.compliance import acknowledge_all_packs, acknowledged
from stacks.metric_catalogue import ENDPOINT_VARIANT, metric, spec

# "If the update would change the instance type for any model that is a target for auto scaling, the update
# fails": an instance-type change deploys in two steps, the first without scalable targets (docs/deploy.md).

VARIANT = VARIANT_NAME
# Blue/green: shift all traffic at once, then bake; any rollback alarm in that window restores the old fleet.
BAKING_SECONDS = 600


def storage_kms_key(config: sagemaker.CfnEndpointConfig, instance_type: str, key_arn: str) -> str | None:
    """Instances with local NVMe storage reject a storage-volume KmsKeyId (their instance-store volumes are
    hardware-encrypted); every other instance type gets the project's key."""
    if has_local_instance_storage(instance_type):
        acknowledge_all_packs(config, "SageMakerEndpointConfigurationKMSKeyConfigured",
                              f"{instance_type} uses local NVMe instance storage, which is encrypted by the hardware; "
                              "CreateEndpointConfig rejects a KmsKeyId for it. Outputs are encrypted with the key.")
        return None
    return key_arn


def variant(model_name: str, instance_type: str,
            initial_count: int) -> sagemaker.CfnEndpointConfig.ProductionVariantProperty:
    return sagemaker.CfnEndpointConfig.ProductionVariantProperty(
        variant_name=VARIANT, model_name=model_name, instance_type=instance_type,
        initial_instance_count=initial_count, initial_variant_weight=1.0)


def blue_green(rollback_alarms: list[cw.Alarm]) -> sagemaker.CfnEndpoint.DeploymentConfigProperty:
    return sagemaker.CfnEndpoint.DeploymentConfigProperty(
        blue_green_update_policy=sagemaker.CfnEndpoint.BlueGreenUpdatePolicyProperty(
            traffic_routing_configuration=sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
                type="ALL_AT_ONCE", wait_interval_in_seconds=BAKING_SECONDS),
            termination_wait_in_seconds=BAKING_SECONDS,
            maximum_execution_timeout_in_seconds=3600,
        ),
        auto_rollback_configuration=sagemaker.CfnEndpoint.AutoRollbackConfigProperty(
            alarms=[sagemaker.CfnEndpoint.AlarmProperty(alarm_name=a.alarm_name) for a in rollback_alarms]),
    )


def endpoint(scope, construct_id: str, name: str, config_name: str, rollback_alarms: list[cw.Alarm], *,
             retain_instance_count: bool = True) -> sagemaker.CfnEndpoint:
    """The endpoint keeps a fixed name (it is updated in place, never replaced; alarms and clients use the name);
    models and endpoint configs get generated names so each rollout creates fresh ones.

    RetainAllVariantProperties: a stack update (new model) keeps the instance count the autoscaler chose.
    ``retain_instance_count=False`` excludes the count, so the new fleet starts with the endpoint config's initial
    count: an async endpoint scaled to zero would otherwise bake a fleet of zero instances, which receives no
    request and cannot trip a rollback alarm (the green fleet gets one instance instead; see AsyncEndpoint)."""
    exclude = None
    if not retain_instance_count:
        exclude = [sagemaker.CfnEndpoint.VariantPropertyProperty(variant_property_type="DesiredInstanceCount")]
    return sagemaker.CfnEndpoint(
        scope, construct_id, endpoint_name=name, endpoint_config_name=config_name,
        retain_all_variant_properties=True, exclude_retained_variant_properties=exclude,
        deployment_config=blue_green(rollback_alarms))


def instance_count_target(scope, endpoint_resource: sagemaker.CfnEndpoint, min_capacity: int,
                          max_capacity: int) -> appscaling.ScalableTarget:
    """The autoscaler's handle on the variant's instance count (min 0 lets an async endpoint scale to zero)."""
    target = appscaling.ScalableTarget(
        scope, "Scaling",
        service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
        resource_id=f"endpoint/{endpoint_resource.endpoint_name}/variant/{VARIANT}",
        scalable_dimension="sagemaker:variant:DesiredInstanceCount",
        min_capacity=min_capacity, max_capacity=max_capacity,
    )
    target.node.add_dependency(endpoint_resource)  # the resource id names the endpoint literally
    return target


def endpoint_metric(endpoint_name: str, metric_name: str, statistic: str, *, variant_dimension: bool = True,
                    period: cdk.Duration | None = None) -> cw.Metric:
    """An AWS/SageMaker endpoint metric; the catalogue refuses a dimension set AWS does not publish it with."""
    dims = {"EndpointName": endpoint_name, **({"VariantName": VARIANT} if variant_dimension else {})}
    return metric("AWS/SageMaker", metric_name, dims, statistic=statistic, period=period)


class ServingEndpoint(Construct):
    """A roadseg endpoint as other constructs use it: its name, ``grant_invoke`` and its metrics.

    Everything here uses the literal endpoint name, never the ``CfnEndpoint``'s attributes: the endpoint exists
    only while a model is approved (condition HasModel), the functions that invoke it always, and an unconditional
    resource must not reference a conditional one."""

    invoke_action: str  # what a client of the endpoint calls: sagemaker:InvokeEndpoint or InvokeEndpointAsync

    def __init__(self, scope: Construct, construct_id: str, endpoint_name: str) -> None:
        super().__init__(scope, construct_id)
        self.endpoint_name = endpoint_name

    @property
    def endpoint_arn(self) -> str:
        return cdk.Stack.of(self).format_arn(service="sagemaker", resource="endpoint",
                                             resource_name=self.endpoint_name)

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` invoke the endpoint. On a role (a function's), the grant and its cdk-nag acknowledgments
        are one call (``compliance.acknowledged``): the ARN is exact, so any wildcard finding fails here."""
        def grant() -> iam.Grant:
            return iam.Grant.add_to_principal(grantee=grantee, actions=[self.invoke_action],
                                              resource_arns=[self.endpoint_arn])

        principal = grantee.grant_principal
        if isinstance(principal, iam.Role):
            return acknowledged(principal, grant, reasons={})
        return grant()

    def metric(self, metric_name: str, *, statistic: str, period: cdk.Duration | None = None) -> cw.Metric:
        """An AWS/SageMaker metric of this endpoint, by endpoint and variant or by endpoint alone: whichever the
        catalogue says AWS publishes it with (the async queue metrics have no VariantName)."""
        by_variant = ENDPOINT_VARIANT in spec("AWS/SageMaker", metric_name).dimension_sets
        return endpoint_metric(self.endpoint_name, metric_name, statistic, variant_dimension=by_variant,
                               period=period)
