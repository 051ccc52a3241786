"""One-off check (not part of the suite): Spark reads every dataset of a lake.

    python -m venv /tmp/spark && /tmp/spark/bin/pip install pyspark pyarrow pandas
    /tmp/spark/bin/python tests/spark_read_lake.py demo-data      # after ./run.sh demo

Prints per dataset the rows, the partition and timestamp columns Spark sees and the
contract symbols (or the first timestamp); a dataset Spark cannot read prints FAILED with
Spark's error.  Needs Java 17.
"""
import sys
from pyspark.sql import SparkSession
spark = (SparkSession.builder.master("local[1]").appName("lake-interop")
         .config("spark.ui.enabled", "false").config("spark.sql.session.timeZone", "UTC")
         .getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
R = sys.argv[1]
for name, path in [("bronze trades", f"{R}/bronze/futures/trades"), ("bronze mbp10", f"{R}/bronze/futures/mbp10"),
                   ("options", f"{R}/bronze/options/trades"), ("dead letters", f"{R}/bronze/_dead_letter"),
                   ("gold level signals", f"{R}/gold/levels/signals"),
                   ("silver signals", f"{R}/silver/features/v3.1.0/signals"),
                   ("silver state_table", f"{R}/silver/features/v3.1.0/state_table"),
                   ("silver episodes", f"{R}/silver/features/v3.1.0/episodes"),
                   ("gold training", f"{R}/gold/training/demo_signals.parquet")]:
    try:
        df = spark.read.parquet(path)
        n = df.count()
        cols = {f.name: f.dataType.simpleString() for f in df.schema.fields
                if f.name in ("symbol", "underlying", "root", "date", "hour", "session_date", "timestamp")}
        extra = ""
        if "symbol" in df.columns:
            extra = sorted(r[0] for r in df.select("symbol").distinct().collect())
        elif "timestamp" in df.columns:
            extra = df.selectExpr("min(timestamp)").collect()[0][0]
        print(f"{name:20s} OK rows={n} {cols} {extra}")
    except Exception as e:  # pylint: disable=broad-except
        print(f"{name:20s} FAILED {str(e).splitlines()[0][:200]}")
spark.stop()
