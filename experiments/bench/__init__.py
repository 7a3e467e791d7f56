"""The benchmark: prefopt's training step against TRL's trainers, in one process run.

Run it as ``python experiments/bench [options]`` (see ``README.md`` beside this file). It drives
prefopt through its public seams only: :func:`prefopt.training.batch_loss`,
:class:`prefopt.models.logps.Scoring` and the full-logits oracle of :mod:`prefopt.models.oracle`.
"""
