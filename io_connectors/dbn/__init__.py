"""Databento DBN files: record decoding and writing (``decode``, ``writer``), the columnar
block decoder (``columnar``), blocks of records for the workers (``blocks``) and the bounded
backfill's read side as Beam PTransforms (``backfill``: ``ReadDbnBlocks``,
``DecodeDbnBlocks``; ``run_report`` checks a run for completeness)."""
