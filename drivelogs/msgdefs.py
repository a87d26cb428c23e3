"""ROS 2 message definitions as recorders store them in an MCAP schema (``ros2msg``: the message, then each
dependency after a ``MSG:`` separator). What writes drive logs here needs them: the rehearsal's generated drive
(demo/drive.py), the extraction benchmark and the tests' log fixtures. Reading needs none: the logs carry their own.
"""

from __future__ import annotations

_TIME_AND_HEADER = """
================================================================================
MSG: std_msgs/Header
builtin_interfaces/Time stamp
string frame_id
================================================================================
MSG: builtin_interfaces/Time
int32 sec
uint32 nanosec
"""
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE = "sensor_msgs/msg/Image"
STRING = "std_msgs/msg/String"

COMPRESSED_IMAGE_MSGDEF = "std_msgs/Header header\nstring format\nuint8[] data\n" + _TIME_AND_HEADER
IMAGE_MSGDEF = ("std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\n"
                "uint32 step\nuint8[] data\n" + _TIME_AND_HEADER)
STRING_MSGDEF = "string data\n"
MSGDEFS = {COMPRESSED_IMAGE: COMPRESSED_IMAGE_MSGDEF, IMAGE: IMAGE_MSGDEF, STRING: STRING_MSGDEF}
