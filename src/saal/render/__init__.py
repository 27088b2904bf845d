"""Pictures and HTML pages that several stages draw: a neutral layer below every stage.

* :mod:`.figures` -- headless matplotlib figures written atomically, the log2 budget
  axis of every learning curve, one run's curve, image grids with titles;
* :mod:`.html` -- :class:`~saal.render.html.Table` and the self-contained HTML
  page (inline CSS, images as data URIs, no scripts) of the run and experiment
  reports.

Nothing here knows about runs, strategies or results files: the stages pass in
plain numbers, images and tables.
"""
