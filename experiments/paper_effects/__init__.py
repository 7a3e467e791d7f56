"""The ORPO paper's findings reproduced in miniature: one command runs the study, the report and
the checks (``python experiments/paper_effects --out DIR``; see ``docs/results.md``)."""
