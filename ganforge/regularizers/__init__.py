"""Regularizers: everything a GAN recipe adds to the plain game.

`base` holds the contract (`Regularizer`, its `Term`, the `Weight` and `Every` parameter types);
the registered regularizers are grouped by where they act: `penalties` (through D's input
gradients), `discriminator` (D's outputs and its other passes), `generator`, `networks` (changes
to the networks themselves) and `augmentation` (D's inputs).
"""

from ganforge.regularizers.base import Every, Regularizer, Term, Weight

__all__ = ["Every", "Regularizer", "Term", "Weight"]
