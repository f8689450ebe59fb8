"""Sockets: RTP senders over UDP and TCP (RFC 4571) with their socket options."""
