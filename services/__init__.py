"""Every feature's rules and writes, callable without a chat: by the conversations in
handlers/, by the scheduler's jobs, and later by the web desk and Open311."""
