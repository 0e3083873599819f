"""Pure Python/numpy safety math. Nothing in this package imports rclpy."""
