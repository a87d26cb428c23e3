"""contracts/drives.py: drive ids."""

from __future__ import annotations

import pytest

from contracts.drives import DriveId, DriveKeyError, drive_of_log_key


def test_drive_ids_are_short_plain_names_and_not_the_tables_folder():
    assert DriveId.parse("car-7/2026-12-03") == DriveId("car-7", "2026-12-03")
    assert drive_of_log_key("drives/car-7/d1.mcap") == DriveId("car-7", "d1")
    with pytest.raises(DriveKeyError, match="reserved"):
        DriveId.parse("timeline/d1")
    with pytest.raises(DriveKeyError, match="1-64 letters"):
        DriveId.parse("car-7/" + "d" * 65)
    with pytest.raises(DriveKeyError, match="the vehicle must be"):
        DriveId.parse("car 7/d1")
