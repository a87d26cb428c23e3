"""The CDK bootstrap names written once in contracts.naming are the ones the CDK's default synthesizer uses."""

from __future__ import annotations

import aws_cdk as cdk

from contracts.naming import CDK_BOOTSTRAP_QUALIFIER, cdk_assets_bucket


def test_the_qualifier_is_the_default_synthesizers():
    assert CDK_BOOTSTRAP_QUALIFIER == cdk.DefaultStackSynthesizer.DEFAULT_QUALIFIER


def test_the_assets_bucket_is_the_default_synthesizers():
    template = cdk.DefaultStackSynthesizer.DEFAULT_FILE_ASSETS_BUCKET_NAME
    expected = (template.replace("${Qualifier}", CDK_BOOTSTRAP_QUALIFIER)
                .replace("${AWS::AccountId}", "111111111111").replace("${AWS::Region}", "eu-west-1"))
    assert cdk_assets_bucket("111111111111", "eu-west-1") == expected == "cdk-hnb659fds-assets-111111111111-eu-west-1"
