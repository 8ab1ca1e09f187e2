"""Differential check against the real kernel: op scripts run on /dev/kvm (kvmcheck.c) and on
the model, compared answer by answer (docs/kvm-check.md). Uses gictools.model; the model knows
nothing of this package."""
