"""Frame encoders: JPEG (libjpeg-turbo) and H.264 (libx264 through PyAV)."""
