"""Colonies followed across yearly surveys of fixed quadrats.

Pure functions on colony masks in one survey's rectified (warped) frame:

- :mod:`quadratseg.track.registration`: align two surveys' warped photos (features + RANSAC
  homography, quarter turns found and undone, residual reported, unalignable pairs refused).
- :mod:`quadratseg.track.matching`: links between the colonies of consecutive surveys, TagLab's
  rule (the baseline) or an overlap graph with assignment (splits, fusions, changed genus calls),
  with events in TagLab's vocabulary and partial mortality.
- :mod:`quadratseg.track.lineage`: one lineage id per colony across all surveys.
- :mod:`quadratseg.track.demography`: recruitment, mortality, growth and size-frequency per site,
  interval and genus, with bootstrap intervals over quadrats.
- :mod:`quadratseg.track.evaluate`: links and events scored against a known truth.
"""
