"""One construct per roadseg Lambda function, each built on :class:`RoadsegFunction`."""
