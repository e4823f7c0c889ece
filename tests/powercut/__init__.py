"""A FUSE filesystem that loses what was not fsynced: the power-cut harness of R7.

``disk`` is the model (pure Python), ``daemon`` serves it over FUSE, ``mount`` drives it from a test.
"""
