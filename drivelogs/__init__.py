"""Drive logs (ROS 1 bags, ROS 2 bags, MCAP files) turned into camera frames for the ingest path."""
