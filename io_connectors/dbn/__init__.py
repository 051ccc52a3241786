"""Databento DBN files: record decoding and writing (``decode``, ``writer``), the columnar
block decoder (``columnar``), files in shares of blocks for the workers (``blocks``) and the
bounded backfill's read side as Beam PTransforms (``backfill``: ``ReadDbnShares``,
``DecodeDbnShares``; ``run_report`` checks a run for completeness)."""
