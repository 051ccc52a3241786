"""The lake's storage edges: local or S3 storage, atomic file helpers, Parquet shard
writing (``WriteParquetShards``), the Bronze reader, and the Silver store, inputs and writer."""
