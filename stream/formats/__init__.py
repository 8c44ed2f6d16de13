"""The file formats specstream reads, one module each; :mod:`stream.files`
is the one door to them (``load_array``, ``variables``, ``FrameSource``).

* :mod:`.sniff` -- which format a file holds, from its bytes (its name only
  when they do not tell); the formats recognised but not read, named.
* :mod:`.base` -- what every reader shares: a regular file first, numbers
  only, the cap on what is read whole, :class:`~.base.Variable`.
* :mod:`.npy` -- ``.npy`` and ``.npz`` (memory-mapped; compressed members capped).
* :mod:`.mat` -- MAT v4, v5/v7 through scipy (read whole).
* :mod:`.hdf5` -- MAT v7.3, Octave's ``-hdf5`` and plain HDF5 through h5py
  (read block by block).
* :mod:`.text` -- text in rows, and Octave's own text format.
* :mod:`.raw` -- headerless binary.

scipy and h5py are imported only when a MAT or HDF5 file is read
(:func:`stream.extras.require` says what to install when one is missing).
"""
