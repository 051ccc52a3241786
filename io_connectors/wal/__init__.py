"""The write-ahead log (``WALManager``) and the publisher that sends through it."""
