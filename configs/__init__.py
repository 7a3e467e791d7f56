# The Hydra config groups of prefopt-train. This folder is the package `prefopt.configs` in an
# installed prefopt (pyproject.toml maps it), so a wheel carries it and Hydra finds it through the
# search path `pkg://prefopt.configs`. Add your own groups with `--config-dir DIR`.
