"""The host: real-time set-up, the tune command, system monitor, temperature and throttling."""
