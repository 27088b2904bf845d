"""The ``saal`` command line: a thin layer over the Python API, one module a stage."""
