"""The ``cprop`` command line: ``cprop verify``, ``cprop reproduce``, ``cprop bench``."""
