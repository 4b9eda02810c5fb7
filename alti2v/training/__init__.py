"""Training: the typed config, the loop every task shares, the run directory it leaves."""
