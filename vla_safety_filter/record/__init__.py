"""Flight record: the pipeline's topics in rosbag2 MCAP format (bag.py writes, read.py reads)."""
