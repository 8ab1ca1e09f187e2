"""The machine: guest memory, vGICv3 redistributors, ITSes, LPIs, translation caches.

Return contract (as vgic-its.c, see the comment above vgic_its_trigger_msi):
command handlers, register writes and save/restore return an int that is
0 on success, a positive architectural E_ITS_* code for a command error the
guest caused, or a negative errno for a host/ABI failure. None of them raise
for anything a guest (or a guest-memory image) can do. This package knows no
files and no CLI.
"""
