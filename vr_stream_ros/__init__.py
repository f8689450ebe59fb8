"""vr_stream_ros: low-latency camera-to-VR-headset streaming for ROS 2."""
