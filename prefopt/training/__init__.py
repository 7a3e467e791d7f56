"""Training: the LightningModule (steps + optimizer only), the loss of one batch, metrics,
callbacks, checkpoint I/O and sharding strategies."""

from prefopt.training.module import PreferenceModule
from prefopt.training.step import BatchLoss, batch_loss

__all__ = ["BatchLoss", "PreferenceModule", "batch_loss"]
