"""Districts: the unit of reconstruction, and of Dagster partitions.

- :mod:`~citysplat.districts.model`: :class:`District` (polygon, image ids, ENU frame), names
- :mod:`~citysplat.districts.geojson`: districts from named GeoJSON polygons
- :mod:`~citysplat.districts.clusters`: districts from HDBSCAN capture clusters, in chunks
- :mod:`~citysplat.districts.files`: a district's folder, and the catalog's copy
- :mod:`~citysplat.districts.membership`: which images a district holds now; fingerprints
- :mod:`~citysplat.districts.plots`: pictures of one district and of all
- :mod:`~citysplat.districts.stage`: the districts stage (catalog -> folders, index)
"""
