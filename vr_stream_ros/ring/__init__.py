"""The shared-memory frame ring: one writer, many readers, no rclpy."""
