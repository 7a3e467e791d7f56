"""Who is compared with whom: the variants' names, the hyperparameters both sides share, and the
comparisons (a TRL trainer, the peer, and the prefopt variants that compute its loss).

How the losses are aligned (each is also checked on the first batch before timing):

* ORPO: TRL's ``beta`` is ORPO's lambda; TRL's NLL covers prompt + response of the chosen row,
  prefopt's ``nll_scope=full`` (its default).
* DPO: ``beta`` 0.1, summed log-probs, the reference log-probs precomputed by each side's own code
  from the initial model (TRL: ``precompute_ref_log_probs=True``).
* SimPO: ``CPOTrainer(loss_type="simpo", cpo_alpha=0)``; TRL's ``simpo_gamma`` is prefopt's
  ``gamma`` (TRL subtracts ``simpo_gamma / beta`` from the margin before multiplying by beta).
* CPO: ``CPOTrainer(loss_type="sigmoid")`` with ``cpo_alpha`` 1; TRL's NLL covers the chosen
  response only: prefopt's ``nll_scope=completion``, used for SimPO too.
* SFT: ``SFTTrainer(completion_only_loss=True)`` on prompt + chosen (B rows); prefopt's SFT arm
  with ``nll_scope=completion`` is the same loss, but it also scores the rejected row (without
  gradients) for its metrics, so it does more work than TRL's; prefopt has no SFT without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

from omegaconf import OmegaConf

from prefopt.models.logps import Scoring
from prefopt.objectives import Objective
from prefopt.objectives.cpo import CPO
from prefopt.objectives.dpo import DPO
from prefopt.objectives.orpo import ORPO
from prefopt.objectives.sft import SFT
from prefopt.objectives.simpo import SimPO

from .trl_runners import CPORunner, DPORunner, ORPORunner, SFTRunner, TRLRunner

LAM = 0.1  # ORPO's lambda (SFT's metric scale)
DPO_BETA = 0.1
SIMPO_BETA, SIMPO_GAMMA = 2.0, 1.0  # prefopt's defaults (TRL's beta default 0.1 is for sums)
CPO_BETA, CPO_ALPHA = 0.1, 1.0
# what prefopt-train runs by default (configs/train.yaml)
DEFAULT_SHARING = OmegaConf.load(files("prefopt.configs") / "train.yaml").module.prompt_sharing

TRL = "TRL ORPOTrainer"
FULL_LOGITS = "prefopt, full logits"
NEEDED = "+ needed positions, chunked"
FUSED = "+ fused head log-softmax"
GROUPED = "+ length grouping"
SHARED = "+ prompt sharing"
PACKED = "+ packing"
SFT_NAME, DPO_NAME = "prefopt SFT", "prefopt DPO (precomputed ref)"
TRL_DPO = "TRL DPOTrainer (precomputed ref)"
SIMPO_NAME, TRL_SIMPO = "prefopt SimPO", 'TRL CPOTrainer (loss_type="simpo")'
CPO_NAME, TRL_CPO = "prefopt CPO", 'TRL CPOTrainer (loss_type="sigmoid")'
SFT_COMPLETION = "prefopt SFT (nll_scope=completion)"
TRL_SFT = "TRL SFTTrainer (completion_only_loss)"
# the row that is prefopt's ORPO with its default settings
ORPO_DEFAULT = SHARED if DEFAULT_SHARING in (True, "auto") else GROUPED
PEERS = ("orpo", "dpo", "simpo", "cpo", "sft")  # ORPO is always run: the ablation and headline


@dataclass(frozen=True)
class Comparison:
    """A peer and the prefopt variants checked and timed against it.

    Attributes:
        key: ``orpo``, ``dpo``, ``simpo``, ``cpo`` or ``sft`` (``--peers``, memory probes).
        title: the heading of its throughput table.
        peer: the TRL variant's name.
        variants: the prefopt variants' names; ``headline`` is the one its targets use.
    """

    key: str
    title: str
    peer: str
    variants: tuple[str, ...]
    headline: str


COMPARISONS = (
    Comparison(
        "orpo",
        "ORPO: TRL vs prefopt, one change at a time (each row adds to the one above)",
        TRL,
        (FULL_LOGITS, NEEDED, FUSED, GROUPED, SHARED, PACKED),
        ORPO_DEFAULT,
    ),
    Comparison("dpo", "DPO, precomputed reference", TRL_DPO, (DPO_NAME,), DPO_NAME),
    Comparison("simpo", "SimPO", TRL_SIMPO, (SIMPO_NAME,), SIMPO_NAME),
    Comparison("cpo", "CPO (sigmoid)", TRL_CPO, (CPO_NAME,), CPO_NAME),
    Comparison("sft", "SFT on the chosen responses", TRL_SFT, (SFT_COMPLETION,), SFT_COMPLETION),
)


def comparisons(peers: tuple[str, ...] = PEERS) -> list[Comparison]:
    """The comparisons of ``peers`` (ORPO's always)."""
    return [c for c in COMPARISONS if c.key == "orpo" or c.key in peers]


def prefopt_side(key: str) -> tuple[Objective, Scoring, str]:
    """prefopt's objective and scoring that compute the loss of ``key``'s peer, and the loss's
    key in ``workload.NEEDS`` (for its useful FLOPs)."""
    default = Scoring(prompt_sharing=DEFAULT_SHARING)  # the module's defaults
    completion = Scoring(nll_scope="completion", prompt_sharing=DEFAULT_SHARING)
    return {
        "orpo": (ORPO(LAM), default, "orpo"),
        "dpo": (DPO(DPO_BETA), default, "preference"),
        "simpo": (SimPO(SIMPO_BETA, SIMPO_GAMMA), completion, "preference"),
        "cpo": (CPO(CPO_BETA, CPO_ALPHA), completion, "preference"),
        "sft": (SFT(LAM), completion, "sft"),
    }[key]


def trl_side(key: str) -> tuple[type[TRLRunner], dict, str]:
    """The TRL runner of ``key``, the loss's fields of its config, and the loss's NEEDS key."""
    return {
        "orpo": (ORPORunner, {"beta": LAM}, "orpo"),
        "dpo": (DPORunner, {"beta": DPO_BETA}, "preference"),
        "simpo": (
            CPORunner,
            dict(loss_type="simpo", beta=SIMPO_BETA, simpo_gamma=SIMPO_GAMMA, cpo_alpha=0.0),
            "preference",
        ),
        "cpo": (
            CPORunner,
            {"loss_type": "sigmoid", "beta": CPO_BETA, "cpo_alpha": CPO_ALPHA},
            "preference",
        ),
        "sft": (SFTRunner, {}, "sft"),
    }[key]
