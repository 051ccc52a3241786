"""NATS JetStream edges: connection settings, streams and durable consumers, the unbounded
Beam source (``ReadFromNats``), acknowledgements, and the bus used to publish."""
