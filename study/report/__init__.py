"""The report: files in, figures, tables and numbers out, then rendered.

- :mod:`study.report.assets`: reads a results folder and writes figures, tables and the
  numbers quoted by the text into ``report/_generated/``; it reads files only;
- :mod:`study.report.tables`, :mod:`study.report.figures`: pure functions (frames in,
  a table or a matplotlib Figure out);
- :mod:`study.report.render`: Quarto, or the fallback (pandoc + typst) with the filter,
  stylesheet and Typst header in ``templates/``.
"""
