"""Datasets: the HDF5 contract (:mod:`.schema`), readers/writers (:mod:`.h5`), other inputs (:mod:`.sources`)."""
