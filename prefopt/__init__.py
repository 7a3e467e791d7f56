"""prefopt: preference optimization (ORPO, SFT, DPO) of causal LMs with Lightning and Hydra."""

__version__ = "0.1.0"
