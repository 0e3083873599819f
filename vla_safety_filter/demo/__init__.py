"""`vla-safety demo`: a real ALOHA episode through the whole ROS 2 pipeline, with a fault drill."""
