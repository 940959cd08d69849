"""Experiments from one YAML file: the study config (validated whole), its matrix of variants ×
conditions × tasks, the content-addressed cell cache, the executor that loads each model once and
switches α in memory, and the report (tables with paired CIs, plots, results.json/csv).

Entry points: :func:`rvec.study.config.load_study`, :func:`rvec.study.runner.run_study` (and
``run_study_file``, what ``rvec run`` calls), :func:`rvec.study.runner.run_tune` (``rvec tune``: the
α search alone, docs/atlas.md), :func:`rvec.study.reporting.render_run`.
"""

__all__: list[str] = []
