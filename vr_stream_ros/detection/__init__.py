"""Object detection beside the video path (Ultralytics YOLO), no rclpy."""
