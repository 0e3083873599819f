"""rclpy lifecycle nodes: thin shells over vla_safety_filter.core."""
