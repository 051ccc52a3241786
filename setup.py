"""Market-data lake on Apache Beam: NATS JetStream -> Bronze/Silver/Gold Parquet."""
from setuptools import find_packages, setup

setup(
    name="marketlake",
    version="0.1.0",
    description="Market-data lake on Apache Beam (NATS JetStream -> Parquet Bronze/Silver/Gold)",
    python_requires=">=3.10",
    packages=find_packages(include=["pipelines", "pipelines.*", "transforms", "transforms.*",
                                    "io_connectors", "io_connectors.*"]),
    install_requires=[
        "apache-beam[aws]==2.77.0",
        "nats-py==2.16.0",
        "pyarrow>=17",
        "pandas>=2",
        "pyyaml>=6",
    ],
)
