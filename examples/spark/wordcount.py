"""A PySpark word count: `wordcount.py INPUT OUTPUT` counts the words of the text file INPUT
and writes them to OUTPUT as JSON (most frequent first).

In a jobforge group with `spark`, the session reaches the batch's cluster without naming it:
`SparkSession.builder.getOrCreate()` reads `spark.master` from the SPARK_CONF_DIR the node
runner gives each job, whether this runs as `spark-submit wordcount.py ...` or as
`"$PYSPARK_PYTHON" wordcount.py ...`. Outside jobforge it runs in Spark's local mode.

INPUT must be on a file system every node sees (the executors read it); OUTPUT is written by
the driver alone."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {argv[0]} INPUT OUTPUT", file=sys.stderr)
        return 2
    # Absolute, as a URI: executors run in their own work dirs, where a relative path is
    # another file, and a cluster's default file system may not be the local one.
    source = Path(argv[1]).resolve()
    target = Path(argv[2])
    spark = SparkSession.builder.appName("wordcount").getOrCreate()
    try:
        print(f"master: {spark.sparkContext.master}", flush=True)
        lines = spark.read.text(source.as_uri())
        words = lines.select(
            F.explode(F.split(F.lower(F.col("value")), r"[^a-z0-9']+")).alias("word")
        ).where(F.col("word") != "")
        counts = [(row["word"], row["count"]) for row in words.groupBy("word").count().collect()]
        line_count = lines.count()
    finally:
        spark.stop()
    counts.sort(key=lambda item: (-item[1], item[0]))
    result = {
        "input": str(source),
        "lines": line_count,
        "words": sum(n for _, n in counts),
        "distinct": len(counts),
        "counts": dict(counts),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    top = ", ".join(f"{word} {n}" for word, n in counts[:5])
    print(f"{result['words']} words, {result['distinct']} distinct; top: {top}")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
