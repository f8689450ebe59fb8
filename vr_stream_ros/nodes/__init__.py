"""ROS 2 nodes: thin rclpy shells around the libraries (camera, bridge, detector, dashboard)."""
