"""The preflight's two kinds of failure other than a failed check; the command maps them to its exit codes."""


class UsageError(Exception):
    """Bad input the user can fix (exit 2)."""


class AwsError(Exception):
    """AWS cannot be used: no credentials or region, access denied, an AWS error (exit 3)."""
