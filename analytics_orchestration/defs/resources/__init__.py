"""The resources every feature shares: ClickHouse and the S3 account its ``s3()`` reads."""
