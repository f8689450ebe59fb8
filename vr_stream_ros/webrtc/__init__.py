"""WebRTC to a browser: aiortc server, TLS, the H.264 track and the viewer page (web/)."""
