"""Edges of the lake: NATS JetStream, lake storage (local / S3), WAL, DBN files."""
