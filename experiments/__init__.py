"""``cprop reproduce``: the paper's experiments (arXiv 1912.11493) on real data.

Modules: ``data`` (digits, IDX, npz), ``models`` (the paper's FC net and CNN), ``optimizers``
(plain optimizers and the torch ``CProp`` wrapper), ``training`` (one seeded run),
``lr_search`` (factor-3 selection), ``runner``/``parallel`` (runs with progress, ``--jobs``),
``suite`` (one experiment per claim), ``report``/``plots`` (tables, CSV/JSON, PNG), ``cli``.
The CProp math itself lives only in ``cprop_core``.
"""
