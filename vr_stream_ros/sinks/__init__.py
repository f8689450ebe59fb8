"""Where the bridge's frames go, one sink per transport (no rclpy).

``base.FrameSink`` is the narrow interface; ``rtp`` sends RTP/JPEG over UDP or TCP,
``webrtc`` H.264 to browsers; ``video_loop`` is the one loop that feeds a sink the
newest ring frame, and ``stream_stats`` what it measures.
"""
