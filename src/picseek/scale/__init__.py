"""Scale-out indexing: the ingest stages as Apache Spark tasks, meeting the library only through Parquet shards.

    shards.py   the shard format (one row per input: file facts, image facts, a vector per space, or an error)
    tasks.py    the worker side: a model per Python worker, decode + embed a partition (pandas in, pandas out)
    spark.py    the driver side: inputs -> DataFrame -> mapInPandas -> shards (`index_on_spark`)
    spark_job.py  the spark-submit entry point
    merge.py    shards -> a library's store, idempotently (`Library.merge`, `picseek merge`)

Only spark.py and spark_job.py import pyspark; merging shards needs pyarrow alone.
"""
