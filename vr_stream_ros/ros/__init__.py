"""rclpy glue shared by the nodes (parameters, QoS, the main loop). Libraries stay ROS-free."""
