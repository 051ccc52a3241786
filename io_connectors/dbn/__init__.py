"""Databento DBN files: decoding into bus events (``decode``), writing them (``writer``),
and the bounded Beam source over files (``ReadDbnMessages``)."""
