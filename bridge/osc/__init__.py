"""OSC: the address table (data), message parsing into commands, and the UDP transport."""
