"""Implicit Q-Learning (Kostrikov, Nair & Levine, 2021) on Minari datasets, composed with Hydra."""

__version__ = "0.1.0"
